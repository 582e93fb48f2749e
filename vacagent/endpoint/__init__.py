"""The HTTP endpoint machines talk to: their features, their joboutputs.

    GET  /machines/<space>/<machine>/machinefeatures/<key>
    GET  /machines/<space>/<machine>/jobfeatures/<key>
    PUT  /machines/<space>/<machine>/joboutputs/<file>
    GET  /healthz        GET /metrics

- `paths`: the URL layout and the checks a request path passes before any
  file is touched (pure);
- `machines`: a machine's directory as the endpoint sees it: lookup, token
  hashes, reading features and writing joboutputs within the hard limits;
- `app`: the aiohttp handlers and the status-code table;
- `server`: the event loop in a background thread, started by the daemon.

Every request is answered from the shared state directory, so any daemon
instance of the site can serve any machine.  docs/machine-protocol.md is
the reference for projects.
"""
