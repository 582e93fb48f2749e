# vacagent-report.sh: POSIX shell functions for a machine to report to vacagent.
#
# Paste this into your user_data (vacagent can do it for you: put
# ##user_data_file_reporter## in the template and name this file in the
# machinetype's user_data_file_reporter), or source it.  Needs curl 7.55+.
#
#   vacagent_heartbeat [TEXT]      refresh the heartbeat file (TEXT: e.g. the load; vacagent
#                                  uses only the time, and an unchanged TEXT, or none,
#                                  is the cheapest to refresh)
#   vacagent_shutdown CODE TEXT    leave the shutdown message "CODE TEXT" (retried 5 times)
#   vacagent_jobs_started N        the machine has started N jobs so far: 0 when its job agent
#                                  starts looking for work, then after each job start (vacagent
#                                  ends a backoff as soon as it sees N > 0)
#   vacagent_demand N              the project has N jobs waiting (an optional hint)
#   vacagent_job_seconds SECONDS   report the seconds spent running jobs so far (an integer:
#                                  vacagent's useful-time ledger; docs/ledger.md)
#   vacagent_put FILE TEXT         write TEXT to joboutputs/FILE (a log, a summary, ...)
#   vacagent_get KIND KEY          print machinefeatures/KEY or jobfeatures/KEY
#
# They read from the environment (set them from the ##user_data_...##
# placeholders in a VM; the local backend and pods get them already):
#   JOBOUTPUTS, MACHINEFEATURES, JOBFEATURES   the machine's URLs (or, with no
#                                  endpoint configured, local directories)
#   VACAGENT_TOKEN                 the machine's token (##user_data_token##)
#   VACAGENT_HEARTBEAT_FILE        the machinetype's heartbeat_file (default: heartbeat)
#   VACAGENT_CA_FILE               a CA bundle, if the endpoint's certificate needs one
#
# The token goes to curl on its standard input, never on its command line
# (where ps would show it).  Each function returns 0 once vacagent has the
# data; otherwise non-zero, with curl's message on stderr.  Codes and what
# vacagent does after each: docs/machine-protocol.md.

_vacagent_curl() {
    printf 'Authorization: Bearer %s\n' "$VACAGENT_TOKEN" |
        curl -sS -f --max-time 30 -H @- -H 'Expect:' ${VACAGENT_CA_FILE:+--cacert "$VACAGENT_CA_FILE"} "$@"
}

vacagent_put() {
    case "$JOBOUTPUTS" in
    http://* | https://*) _vacagent_curl -X PUT --data-binary "$2" "$JOBOUTPUTS/$1" ;;
    *) printf '%s\n' "$2" >"$JOBOUTPUTS/.$1.tmp" && mv -f "$JOBOUTPUTS/.$1.tmp" "$JOBOUTPUTS/$1" ;;
    esac
}

vacagent_get() {
    case "$1" in
    machinefeatures) _vacagent_where=$MACHINEFEATURES ;;
    jobfeatures) _vacagent_where=$JOBFEATURES ;;
    *) echo "vacagent_get: KIND is machinefeatures or jobfeatures, not '$1'" >&2; return 2 ;;
    esac
    case "$_vacagent_where" in
    http://* | https://*) _vacagent_curl "$_vacagent_where/$2" ;;
    *) cat "$_vacagent_where/$2" ;;
    esac
}

vacagent_heartbeat() {
    vacagent_put "${VACAGENT_HEARTBEAT_FILE:-heartbeat}" "${1:-}"
}

vacagent_job_seconds() {
    case "$1" in
    '' | *[!0-9]*) echo "vacagent_job_seconds: SECONDS is a whole number, not '$1'" >&2; return 2 ;;
    esac
    vacagent_put job_seconds "$1"
}

vacagent_shutdown() {
    _vacagent_code=$1
    shift
    for _vacagent_wait in 1 2 4 8 0; do
        vacagent_put shutdown_message "$_vacagent_code $*" && return 0
        sleep "$_vacagent_wait"
    done
    return 1
}

_vacagent_count() {
    case "$2" in
    '' | *[!0-9]*) echo "vacagent_$1: N is a count (0, 1, 2, ...), not '$2'" >&2; return 2 ;;
    esac
    vacagent_put "$1" "$2"
}

vacagent_jobs_started() {
    _vacagent_count jobs_started "$1"
}

vacagent_demand() {
    _vacagent_count demand "$1"
}
