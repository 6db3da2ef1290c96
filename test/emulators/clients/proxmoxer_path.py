"""The Proxmox backend's whole path, driven by proxmoxer (an independent client) against the emulator.

Prints one JSON object: what each step answered. Settings come from the environment (PVE_HOST, PVE_PORT, PVE_USER,
PVE_TOKEN_NAME, PVE_TOKEN_VALUE, PVE_NODE, PVE_TEMPLATE, SSH_PUBKEY).
"""
import json
import os
import sys
import time
import urllib.parse

import urllib3
from proxmoxer import ProxmoxAPI
from proxmoxer.core import ResourceException

urllib3.disable_warnings()
env = os.environ
api = ProxmoxAPI(env["PVE_HOST"], port=int(env["PVE_PORT"]), user=env["PVE_USER"], token_name=env["PVE_TOKEN_NAME"],
                 token_value=env["PVE_TOKEN_VALUE"], verify_ssl=False, timeout=10)
node = env["PVE_NODE"]
template = int(env["PVE_TEMPLATE"])
seen = {}


def wait(upid):
    for _ in range(600):
        status = api.nodes(node).tasks(upid).status.get()
        if status["status"] == "stopped":
            return status
        time.sleep(0.02)
    raise SystemExit("task did not end: " + upid)


seen["version"] = api.version.get()
seen["nodes"] = api.nodes.get()
vmid = int(api.cluster.nextid.get())
seen["nextid"] = vmid
upid = api.nodes(node).qemu(template).clone.post(newid=vmid, name="outpost-proxmoxer", full=1)
seen["clone_upid"] = upid
seen["clone_in_progress"] = [item for item in api.cluster.resources.get(type="vm") if item["vmid"] == vmid]
seen["clone_status"] = wait(upid)
seen["config_after_clone"] = api.nodes(node).qemu(vmid).config.get()
api.nodes(node).qemu(vmid).config.put(cores=2, memory="2048", ciuser="outpost", cipassword="s3cret-Pass",
                                      sshkeys=urllib.parse.quote(env["SSH_PUBKEY"] + "\n", safe=""),
                                      ipconfig0="ip=dhcp", agent="1", tags="outpost")
seen["config"] = api.nodes(node).qemu(vmid).config.get()
seen["resize_status"] = wait(api.nodes(node).qemu(vmid).resize.put(disk="scsi0", size="16G"))
seen["disk"] = api.nodes(node).qemu(vmid).config.get()["scsi0"]
seen["start_status"] = wait(api.nodes(node).qemu(vmid).status.start.post())
agent_errors = []
for _ in range(500):
    try:
        seen["interfaces"] = api.nodes(node).qemu(vmid).agent("network-get-interfaces").get()
        break
    except ResourceException as error:
        agent_errors.append([error.status_code, error.content])
        time.sleep(0.01)
seen["agent_errors"] = agent_errors[:1]
seen["status"] = api.nodes(node).qemu(vmid).status.current.get()
seen["shutdown_status"] = wait(api.nodes(node).qemu(vmid).status.shutdown.post(timeout=30, forceStop=1))
seen["status_after_shutdown"] = api.nodes(node).qemu(vmid).status.current.get()["status"]
seen["stop_status"] = wait(api.nodes(node).qemu(vmid).status.stop.post())
seen["delete_status"] = wait(api.nodes(node).qemu(vmid).delete(purge=1, **{"destroy-unreferenced-disks": 1}))
seen["left"] = [item for item in api.cluster.resources.get(type="vm") if item["vmid"] == vmid]
try:
    api.nodes(node).qemu(template).config.put(cores=0, tags="<b>x</b>")
except ResourceException as error:
    seen["refused"] = [error.status_code, error.content]
json.dump(seen, sys.stdout)
