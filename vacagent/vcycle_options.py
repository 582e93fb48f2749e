"""What each Vcycle option becomes in vacagent: the tables `vcycle_import` follows.

Every option of vcycle.conf(5) (and the older names Vcycle still reads) is in
exactly one table: carried over under the same name, carried over under
another name, or not carried over with the reason the operator reads in the
output.  An option in no table is unknown and gets a comment of its own.
The backend option names are those of docs/backends/*.md.

Neighbours: `vcycle_read` (the input), `vcycle_import` (the conversion).
"""

from __future__ import annotations

import re

# Vcycle's api = ... -> vacagent backend.
API_BACKENDS = {"openstack": "openstack", "ec2": "ec2", "google": "gce", "gce": "gce"}

# Option names whose values are credentials: never written out, whatever the section.
SECRET_OPTION = re.compile(r"pass|secret|token|cred|private|client_email|(^|_)key($|_)|access_key|proxy_(cert|key)",
                           re.I)

# Space options vacagent reads under the same or another name, whatever the backend.
SPACE_LIMITS = {"processors_limit": "processors_limit", "max_processors": "processors_limit",
                "max_machines": "max_machines"}

# Space options not carried over, and why.
SPACE_DROPPED = {
    "api_version": "vacagent's backends choose the API version they need themselves",
    "volume_gb_per_processor": "vacagent attaches no extra volumes: choose a flavor or instance type with the disk",
    "vacmon_hostport": "vacagent sends no VacMon UDP messages: scrape the endpoint's /metrics (Prometheus) instead",
    "shutdown_time": "vacagent has no site-wide shutdown time: to stop creating, set the machinetypes' "
                     "target_share to 0 or stop the daemon (machines keep running)",
    "glance_api": "vacagent uses images already registered in Glance and never uploads one",
    "version": "boto3 uses the EC2 API version it was built for",
    "service": "boto3 signs requests for the service 'ec2'; an EC2-compatible endpoint that wants another "
               "service name is not supported",
}

# Backend option names: Vcycle space option -> vacagent `options:` key, per backend.
BACKEND_OPTIONS = {
    "openstack": {"region": "region", "zones": "availability_zones", "security_groups": "security_groups",
                  "network_uuid": "network", "flavor_names": "flavor_names", "key_name": "key_name"},
    "ec2": {"region": "region", "url": "endpoint_url", "flavor_names": "instance_types",
            "subnet_id": "subnet_id", "security_group_ids": "security_group_ids", "key_name": "key_name"},
    "gce": {"project": "project", "project_id": "project", "zone": "zones", "zones": "zones",
            "network": "network", "subnetwork": "subnetwork", "service_account": "service_account",
            "flavor_names": "machine_types", "credentials_file": "credentials_file"},
}
LIST_OPTIONS = {"availability_zones", "security_groups", "flavor_names", "instance_types", "machine_types",
                "zones", "security_group_ids"}

# OpenStack space options that make up the identity (keystone) block; cred_* and password* are secrets.
OPENSTACK_AUTH = {"url": "auth_url", "project_name": "project_name", "tenancy_name": "project_name",
                  "username": "username", "cred_id": "application_credential_id"}
OPENSTACK_SECRETS = {"password_base64": "password", "password": "password",
                     "cred_secret": "application_credential_secret"}
EC2_SECRETS = {"access_key": "aws_access_key_id", "secret_key": "aws_secret_access_key"}

# Machinetype options whose flavor list goes under another name per backend.
MACHINETYPE_FLAVORS = {"openstack": "flavor_names", "ec2": "instance_type", "gce": "machine_type"}

# Machinetype options renamed.
MACHINETYPE_RENAMED = {"processors_per_machine": "processors"}

# Machinetype options not carried over, and why.
MACHINETYPE_DROPPED = {
    "cvmfs_proxy_machinetype": "vacagent does not build proxy lists from another machinetype's machines: "
                               "give the proxies in user_data_option_cvmfs_proxy",
    "https_x509dn": "not needed: each machine writes its joboutputs with its own token (##user_data_token##, "
                    "docs/machine-protocol.md)",
    "x509dn": "not needed: each machine writes its joboutputs with its own token (##user_data_token##, "
              "docs/machine-protocol.md)",
    "legacy_proxy": "vacagent makes no X.509 proxies",
    "user_data_proxy": "vacagent makes no X.509 proxies: ##user_data_x509_proxy## is left empty; give the "
                       "machines their credentials another way (the x509cert.pem/x509key.pem of Vcycle's "
                       "machinetype directory were not read)",
    "user_data_proxy_cert": "vacagent makes no X.509 proxies: ##user_data_x509_proxy## is left empty",
    "user_data_proxy_key": "vacagent makes no X.509 proxies: ##user_data_x509_proxy## is left empty",
    "cernvm_signing_dn": "vacagent does not verify image signatures: it boots images registered in the cloud",
    "image_signing_dn": "vacagent does not verify image signatures: it boots images registered in the cloud",
    "log_joboutputs": "vacagent always keeps each machine's joboutputs in its state directory "
                      "(finished/<date>/..., kept finished_retention_days)",
    "log_machineoutputs": "vacagent always keeps each machine's joboutputs in its state directory",
    "joboutputs_days": "use the top-level finished_retention_days",
    "remote_joboutputs_url": "vacagent does not copy joboutputs to a remote server",
    "remote_joboutputs_cert": "vacagent does not copy joboutputs to a remote server",
    "remote_joboutputs_key": "vacagent does not copy joboutputs to a remote server",
}

# Vacuum pipe section options handled by the pipe itself.
PIPE_OWN = {"vacuum_pipe_url", "target_share"}

# Vcycle keeps a machinetype's files here; relative paths in a machinetype section are relative to it.
FILES_DIR = "spaces/{space}/machinetypes/{machinetype}/files"
