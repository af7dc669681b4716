#!/bin/bash
# Write slurm.conf and slurmdbd.conf into directory $1 from the variables up.sh exports.
# Timeouts are short so failures are detected in seconds (values measured in local-slurm.md).
set -euo pipefail
out="$1"
last=$((SLURMD_PORT0 + NODES))
cat >"$out/slurm.conf" <<CONF
ClusterName=$CLUSTER_NAME
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT0
SlurmUser=root
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
StateSaveLocation=$ROOT/state
SlurmdSpoolDir=$ROOT/spool/%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$MUNGE_SOCKET
NodeName=n[1-$NODES] NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((SLURMD_PORT0 + 1))-$last CPUs=$CPUS_PER_NODE RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=n[1-$NODES] Default=YES MaxTime=INFINITE State=UP
CONF
cat >"$out/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
CONF
