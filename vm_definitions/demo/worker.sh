#!/bin/sh
# A demo machine for the local backend (user_data of vm_definitions/demo.pipe).
#
# It takes job files from its project's queue directory, one at a time; a job
# file holds the number of seconds the job "works".  While working it
# refreshes its heartbeat.  When the queue has stayed empty for idle_seconds
# it leaves "300 No more work available" as its shutdown message and exits,
# which is what makes vacagent back off this machinetype.
#
# vacagent fills in the ##user_data_...## placeholders before the machine
# starts; $JOBOUTPUTS and $JOBFEATURES are set by the local backend.

queue='##user_data_option_queue##'
idle_seconds='##user_data_option_idle_seconds##'
machine='##user_data_machine_hostname##'

mkdir -p "$queue/running" "$queue/done"
wall_limit=$(cat "$JOBFEATURES/wall_limit_secs" 2>/dev/null || echo 3600)
started=$(date +%s)

heartbeat() { date +%s > "$JOBOUTPUTS/heartbeat.tmp" && mv "$JOBOUTPUTS/heartbeat.tmp" "$JOBOUTPUTS/heartbeat"; }
finish() { echo "$1" > "$JOBOUTPUTS/shutdown_message.tmp" && mv "$JOBOUTPUTS/shutdown_message.tmp" "$JOBOUTPUTS/shutdown_message"; exit 0; }

heartbeat
idle=0
while :; do
    if [ $(( $(date +%s) - started )) -ge $(( wall_limit - 60 )) ]; then
        finish "200 Intended work completed ok"
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
        [ "$idle" -ge "$idle_seconds" ] && finish "300 No more work available"
        sleep 1
        continue
    fi
    idle=0
    seconds=$(cat "$queue/running/$job" 2>/dev/null | tr -cd '0-9')
    echo "$(date +%T) $machine: running $job for ${seconds:-10}s"
    i=0
    while [ "$i" -lt "${seconds:-10}" ]; do sleep 1; i=$((i + 1)); heartbeat; done
    echo "$machine" >> "$queue/running/$job"
    mv "$queue/running/$job" "$queue/done/$job"
done
