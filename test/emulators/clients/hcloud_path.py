"""Hetzner's own Python library (python3-hcloud) against the emulator: the calls the Hetzner backend's work needs.

Prints one JSON object: what each step answered. HCLOUD_ENDPOINT, HCLOUD_TOKEN and SSH_PUBKEY come from the environment.
"""
import json
import os
import sys

from hcloud import APIException, Client
from hcloud.images.domain import Image
from hcloud.locations.domain import Location
from hcloud.server_types.domain import ServerType
from hcloud.ssh_keys.domain import SSHKey

client = Client(token=os.environ["HCLOUD_TOKEN"], api_endpoint=os.environ["HCLOUD_ENDPOINT"], poll_interval=0.05)
seen = {}

seen["locations"] = [[location.id, location.name, location.network_zone] for location in client.locations.get_all()]
seen["server_types"] = {
    server_type.name: [[price["location"], price["price_hourly"]["gross"]] for price in server_type.prices]
    for server_type in client.server_types.get_all()
}
seen["cx22"] = client.server_types.get_by_name("cx22").id
seen["fsn1"] = client.locations.get_by_name("fsn1").id
seen["images"] = [[image.id, image.name] for image in client.images.get_all(name="ubuntu-24.04")]
seen["image_by_id"] = client.images.get_by_id(114690387).name
key = client.ssh_keys.create(name="renter", public_key=os.environ["SSH_PUBKEY"], labels={"outpost.managed": "true"})
seen["key_by_id"] = client.ssh_keys.get_by_id(key.id).name

by_ids = client.servers.create(name="by-ids", server_type=ServerType(id=seen["cx22"]), image=Image(id=161547269),
                               location=Location(id=seen["fsn1"]), ssh_keys=[SSHKey(id=key.id)],
                               labels={"role": "web", "env": "prod"})
by_ids.action.wait_until_finished()
by_names = client.servers.create(name="by-names", server_type=ServerType(name="cax11"), image=Image(name="ubuntu-24.04"),
                                 location=Location(name="nbg1"), ssh_keys=[SSHKey(name="renter")],
                                 labels={"role": "db", "env": "prod"})
by_names.action.wait_until_finished()
for created in (by_ids, by_names):
    server = client.servers.get_by_id(created.server.id)
    seen[server.name] = {
        "status": server.status,
        "server_type": server.server_type.name,
        "image": [server.image.id, server.image.name],
        "location": server.datacenter.location.name,
        "ipv4": server.public_net.ipv4.ip,
        "root_password": created.root_password,
        "actions": [[action.command, action.status] for action in server.get_actions()],
    }
seen["selected"] = {
    selector: sorted(server.name for server in client.servers.get_all(label_selector=selector))
    for selector in ["env=prod", "role in (web,cache)", "role notin (web)", "env=prod,role!=db", "!role", "role"]
}
try:
    client.servers.create(name="bad-label", server_type=ServerType(name="cx22"), image=Image(name="debian-12"),
                          labels={"note": "has spaces"})
except APIException as error:
    seen["bad_label"] = [error.code, error.details["fields"][0]["name"]]
for created in (by_ids, by_names):
    client.servers.delete(created.server).wait_until_finished()
seen["key_deleted"] = client.ssh_keys.delete(key)
seen["left"] = [len(client.servers.get_all()), len(client.ssh_keys.get_all())]
json.dump(seen, sys.stdout)
