#!/bin/sh
# A demo machine for the local backend (user_data of vm_definitions/demo.pipe).
#
# It takes job files from its project's queue directory, one at a time; a job
# file holds the number of seconds the job "works".  While working it
# refreshes its heartbeat.  When the queue has stayed empty for idle_seconds
# it leaves "300 No more work available" as its shutdown message and exits,
# which is what makes vacagent back off this machinetype.
#
# It reports the way a VM would: over HTTP to vacagent's endpoint, with the
# shell reporter (reporter/vacagent-report.sh), which vacagent pastes in
# below in place of the user_data_file_reporter placeholder (etc/demo.yaml
# names the file).  The local backend sets $JOBOUTPUTS, $JOBFEATURES (the
# machine's URLs) and $VACAGENT_TOKEN; vacagent fills in the placeholders.

queue='##user_data_option_queue##'
idle_seconds='##user_data_option_idle_seconds##'
machine='##user_data_machine_hostname##'

##user_data_file_reporter##

mkdir -p "$queue/running" "$queue/done"
wall_limit=$(vacagent_get jobfeatures wall_limit_secs) || wall_limit=3600
started=$(date +%s)

heartbeat() { vacagent_heartbeat || echo "$machine: heartbeat not accepted" >&2; }
finish() {
    echo "$(date +%T) $machine: leaving '$*'"
    vacagent_shutdown "$@" || echo "$machine: shutdown message not accepted" >&2
    exit 0
}

heartbeat
idle=0
while :; do
    if [ $(( $(date +%s) - started )) -ge $(( wall_limit - 60 )) ]; then
        finish 200 Intended work completed ok
    fi
    job=''
    for candidate in "$queue"/*.job; do
        [ -e "$candidate" ] || break
        name=$(basename "$candidate")
        # mv is atomic within one filesystem: exactly one machine gets each job.
        if mv "$candidate" "$queue/running/$name" 2>/dev/null; then job=$name; break; fi
    done
    if [ -z "$job" ]; then
        idle=$((idle + 1))
        [ "$idle" -ge "$idle_seconds" ] && finish 300 No more work available
        sleep 1
        continue
    fi
    idle=0
    seconds=$(cat "$queue/running/$job" 2>/dev/null | tr -cd '0-9')
    echo "$(date +%T) $machine: running $job for ${seconds:-10}s"
    i=0
    while [ "$i" -lt "${seconds:-10}" ]; do
        sleep 1
        i=$((i + 1))
        [ $((i % 5)) -eq 0 ] && heartbeat
    done
    heartbeat
    echo "$machine" >> "$queue/running/$job"
    mv "$queue/running/$job" "$queue/done/$job"
done
