#!/bin/sh
# A worker pod's user_data (vm_definitions/k8s.pipe): the container runs it
# from the Secret vacagent mounts at /var/run/vacagent/user_data.
#
# The kubernetes backend sets $JOBOUTPUTS, $MACHINEFEATURES, $JOBFEATURES
# (the endpoint's URLs) and $VACAGENT_TOKEN (from the Secret); the shell
# reporter (reporter/vacagent-report.sh, pasted in below by vacagent when
# the site names it as user_data_file_reporter) reports with them.

queue='##user_data_option_queue##'

##user_data_file_reporter##

vacagent_heartbeat || echo "heartbeat not accepted" >&2
( while sleep 300; do vacagent_heartbeat >/dev/null 2>&1; done ) &

# The image's job agent: exit 0 after work, 3 when the queue was empty.
job-agent --queue "$queue"
case $? in
0) message="200 Intended work completed ok" ;;
3) message="300 No more work available" ;;
*) message="700 Job agent failed" ;;
esac
# Also the termination message: vacagent reads it from the pod's status if the endpoint was unreachable.
echo "$message" >/dev/termination-log 2>/dev/null
vacagent_shutdown $message
exit 0
