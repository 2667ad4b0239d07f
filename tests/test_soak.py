"""A soak: concurrent readers use every token they get at the fake WeChat, across several
rotations and a 20-second outage, with replaced tokens dying after 5 s (stricter than
WeChat's five minutes). No reader may ever hold a rejected token or fail a read."""

import threading
import time
from urllib.request import Request, build_opener, ProxyHandler

READERS = 8
SOAK_SECS = 80
OUTAGE = (25, 45)  # seconds into the soak

_http = build_opener(ProxyHandler({}))


def test_readers_never_hold_a_rejected_token_across_rotations_and_an_outage(start_worker, fake):
    fake.expires_in = 75  # rotated about every 20 s with a 55 s margin
    fake.grace_secs = 5
    worker = start_worker(REFRESH_MARGIN_SECS="55", MIN_REFRESH_INTERVAL_SECS="1")
    failed_reads, used, rejected = [], [], []
    lock = threading.Lock()
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                reply = worker.get_token()
                if reply.status != 200:
                    with lock:
                        failed_reads.append((reply.status, reply.text[:200]))
                    continue
                token = reply.json["access_token"]
                url = f"{fake.base_url}/cgi-bin/getcallbackip?access_token={token}"
                answer = _http.open(Request(url), timeout=10).read().decode()
            except Exception as died:  # a timeout, a refused connection: the reader is gone
                with lock:
                    failed_reads.append(("died", repr(died)[:200]))
                return
            with lock:
                used.append(token)
                if "errcode" in answer:
                    rejected.append(token)
            time.sleep(0.2)

    threads = [threading.Thread(target=reader) for _ in range(READERS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        time.sleep(OUTAGE[0])
        fake.mode = "http_500"
        time.sleep(OUTAGE[1] - OUTAGE[0])
        fake.mode = "ok"
        time.sleep(SOAK_SECS - (time.monotonic() - started))
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    distinct = set(used)
    assert failed_reads == [], failed_reads[:5]
    assert rejected == [], f"{len(rejected)} of {len(used)} uses rejected"
    assert len(distinct) >= 3, f"only {len(distinct)} tokens over the soak: too few rotations"
    assert len(used) > READERS * 100
