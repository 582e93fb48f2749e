"""The state directory: plain files that operators read and several daemons share;
every JSON file carries its format version (formats).

Layout (docs/architecture.md has the full reference):

    STATE/instances/<id>.json                           one per running daemon (instances)
    STATE/spaces/<space>/lease.json, epochs/<N>.json    who holds the space, under which epoch (lease)
    STATE/spaces/<space>/machines/<name>/machine.json   one per live machine
    STATE/spaces/<space>/machinetypes/<mt>/{definition,feedback}.json
    STATE/spaces/<space>/finished/<yyyy-mm-dd>/<name>/   closed machines
    STATE/accounting/<yyyy-mm-dd>.jsonl                  one line per finished machine
    STATE/decisions/<space>.jsonl                        why each cycle did what it did
    STATE/cache/                                         fetched pipes and templates
    STATE/endpoint.json                                  when the machine endpoint last came up
"""
