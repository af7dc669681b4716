#!/bin/bash
# Print slurm.conf ($1 = slurm) or slurmdbd.conf ($1 = slurmdbd, with DB_PASS) from the variables
# up.sh exports. Timeouts are short so failures are detected in seconds (see local-slurm.md).
set -euo pipefail
last=$((SLURMD_PORT0 + NODES))
if [[ "$1" == slurm ]]; then
  cat <<CONF
ClusterName=$CLUSTER_NAME
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT0
SlurmUser=$SLURM_USER
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire defaults to 120 s and delays every requeued job by that long.
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=1
JobRequeue=1
SlurmdTimeout=5
MessageTimeout=3
KillWait=5
MinJobAge=300
SchedulerParameters=sched_interval=2,bf_interval=1
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$ROOT/spool/%n
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$SLURM_DIR/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
NodeName=n[1-$NODES] NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((SLURMD_PORT0 + 1))-$last CPUs=$CPUS_PER_NODE RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=n[1-$NODES] Default=YES MaxTime=INFINITE State=UP
CONF
else
  cat <<CONF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=$SLURM_USER
PidFile=$SLURM_DIR/slurmdbd.pid
LogFile=$SLURM_DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
CONF
fi
