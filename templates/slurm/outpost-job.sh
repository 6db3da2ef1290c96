#!/bin/sh
# The SLURM job of one Outpost contract. The agent fills the placeholders in double braces; a line whose
# placeholder has no value (no account configured, no GPUs in the contract) is left out. Copy this file and set
# [provisioner.slurm] template to change it.
#SBATCH --job-name={{job_name}}
#SBATCH --partition={{partition}}
#SBATCH --account={{account}}
#SBATCH --nodes={{nodes}}
#SBATCH --ntasks={{tasks}}
#SBATCH --cpus-per-task={{cpus_per_task}}
#SBATCH --mem={{memory_mb}}M
#SBATCH --time={{time_limit}}
#SBATCH --gres={{gres}}
#SBATCH --output={{output}}

# The workload. The job's environment carries OUTPOST_CONTRACT_ID, OUTPOST_INSTANCE (the job name) and
# OUTPOST_SSH_PUBKEY (the renter's key). Replace the lines below with what your renters get, for example an sshd on
# the allocated node that admits that key. The job holds its allocation until the contract ends: the agent's
# scancel stops it.
echo "outpost: contract $OUTPOST_CONTRACT_ID on $(hostname), job $SLURM_JOB_ID"
exec sleep infinity
