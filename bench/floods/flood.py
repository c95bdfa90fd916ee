#!/usr/bin/env python3
"""Floods one relay binary's JSON API from one address, as the hardening
issue measured it: mapping writes with 500-character ids under one client
key, then registrations, over one keep-alive connection each. Prints the
statuses, the time and what etcd's database in use grew by.

    go build -o /tmp/relay ./cmd/relay
    python3 bench/floods/flood.py /tmp/relay 1000 500   # 1,000 registrations, 500 mappings

Needs etcdctl (Debian: etcd-client). Everything runs on loopback ports
18080/12379/12380 and a temporary data directory.
"""
import http.client, json, shutil, subprocess, sys, tempfile, time, urllib.request

def main(binary, n_reg, n_map):
    data = tempfile.mkdtemp()
    relay = subprocess.Popen([binary, "--listen", "127.0.0.1:18080", "--data-dir", data,
                              "--etcd-listen", "http://127.0.0.1:12379", "--etcd-peer-listen", "http://127.0.0.1:12380",
                              "--admin-listen", "", "--log-level", "error"], stderr=subprocess.DEVNULL)
    try:
        for _ in range(400):
            try:
                urllib.request.urlopen("http://127.0.0.1:18080/healthz")
                break
            except Exception:
                time.sleep(0.05)
        c = http.client.HTTPConnection("127.0.0.1", 18080)
        c.request("POST", "/v1/instances", json.dumps({"url": "https://acme.atlassian.net", "jiraVersion": "1", "addinVersion": "1"}),
                  {"Content-Type": "application/json"})
        reg = json.loads(c.getresponse().read())
        if "instanceId" not in reg:
            print("no tenant for the mapping flood (registration refused):", reg)
            return
        flood(binary, "mapping writes", n_map, lambda i: ("/v1/instances/%s/mappings" % reg["instanceId"],
              {"X-Relay-Key": reg["clientKey"]},
              {"conversationId": ("c%05d" % i) * 100, "mailId": ("m%05d" % i) * 100, "userId": ("u%05d" % i) * 100,
               "app": "outlook", "jira": {"id": "10001", "key": "ITSM-1", "projectId": "1"}}))
        flood(binary, "registrations", n_reg, lambda i: ("/v1/instances", {},
              {"url": "https://t%d.atlassian.net" % i, "jiraVersion": "1001.0.0", "addinVersion": "4.2.0"}))
    finally:
        relay.terminate()
        relay.wait()
        shutil.rmtree(data)

def db_in_use():
    out = subprocess.run(["etcdctl", "--endpoints=http://127.0.0.1:12379", "endpoint", "status", "-w", "json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]["Status"]["dbSizeInUse"]

def flood(binary, what, n, request):
    before = db_in_use()
    c = http.client.HTTPConnection("127.0.0.1", 18080)
    statuses = {}
    start = time.time()
    for i in range(n):
        path, headers, body = request(i)
        c.request("POST", path, json.dumps(body), dict(headers, **{"Content-Type": "application/json"}))
        r = c.getresponse()
        r.read()
        statuses[r.status] = statuses.get(r.status, 0) + 1
    took = time.time() - start
    time.sleep(0.5)
    print("%s: %d %s in %.2f s, statuses %s, etcd db in use +%.1f MB"
          % (binary, n, what, took, statuses, (db_in_use() - before) / 1e6))

if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
