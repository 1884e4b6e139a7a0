"""The reward server's connection slots and its shutdown, over real sockets: slow bodies,
idle sockets, one address holding too many, and SIGTERM with work in flight."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from gram_jax.serving.request_parsing import Limits
from gram_jax.serving.lifecycle import serve_in_background
from gram_jax.serving.server import RewardServer
from tests.reliability.test_serve_hostile import (PAIR, idle_sockets, post, raw_exchange,
                                                  slowed, tiny_reward)


SLOW_BODY = (b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
             b"Content-Length: 100\r\n\r\n{\"pa")


def test_slow_body_times_out_and_busy_connections_are_capped():
  running = serve_in_background(RewardServer(tiny_reward(), Limits(body_timeout_s=0.5,
                                                                   max_connections=3)))
  try:
    answer = raw_exchange(running.port, SLOW_BODY, wait=5)
    assert answer.startswith(b"HTTP/1.1 408") and b"body_timeout_s=0.5" in answer
    time.sleep(0.2)  # that connection's slot is free again
    busy = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(3)]
    for s in busy:  # every slot carries a request whose body is still coming
      s.sendall(SLOW_BODY)
    time.sleep(0.2)
    try:
      over = raw_exchange(running.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
      assert over.startswith(b"HTTP/1.1 503") and b"max_connections" in over
    finally:
      for s in busy:
        s.close()
    time.sleep(0.2)
    assert urllib.request.urlopen(running.url + "/health", timeout=30).status == 200
  finally:
    running.stop()


def test_idle_sockets_cannot_hold_the_connection_slots():
  """Sockets that never send a byte (no key needed) make room for newcomers at the cap and
  are closed at their header deadline; /health answers throughout and scores are
  unchanged."""
  running = serve_in_background(RewardServer(tiny_reward(), Limits(max_connections=8,
                                                                   header_timeout_s=1.0)))
  try:
    before = post(running.url, "/score", {"pairs": [PAIR]})[1]["scores"]
    idle = idle_sockets(running.port, 32)
    time.sleep(0.6)  # silent long enough to make room (a younger one may be about to send)
    for _ in range(5):
      with urllib.request.urlopen(running.url + "/health", timeout=5) as response:
        assert response.status == 200
    assert post(running.url, "/score", {"pairs": [PAIR]})[1]["scores"] == before
    time.sleep(2.5)  # past the header deadline: the server has closed every idle socket
    for s in idle:  # (those over the cap at once, after a 503)
      s.settimeout(1.0)
      answer = b""
      while chunk := s.recv(4096):
        answer += chunk
      assert answer == b"" or answer.startswith(b"HTTP/1.1 503")
      s.close()
  finally:
    running.stop()


def test_one_peer_cannot_take_more_than_its_share_of_the_slots():
  """An attacker at another address (127.0.0.2, as a remote one would be) holding idle
  sockets gets 503 past max_connections_per_peer and evicts nobody; others are served."""
  running = serve_in_background(RewardServer(tiny_reward(), Limits(
      max_connections=16, max_connections_per_peer=6)))
  try:
    before = post(running.url, "/score", {"pairs": [PAIR]})[1]["scores"]
    attacker = []
    for _ in range(20):
      s = socket.socket()
      s.bind(("127.0.0.2", 0))
      s.connect(("127.0.0.1", running.port))
      attacker.append(s)
    attacker[-1].settimeout(30)  # the server has accepted every one: the last's 503 arrived
    attacker[-1].recv(1, socket.MSG_PEEK)
    refused = []
    for s in attacker:
      s.settimeout(0.3)
      try:
        refused.append(s.recv(4096))
      except socket.timeout:
        refused.append(b"")
    assert sum(answer.startswith(b"HTTP/1.1 503") for answer in refused) == 14
    assert b"max_connections_per_peer" in refused[-1]
    for _ in range(20):  # fresh connections from 127.0.0.1 each time
      with urllib.request.urlopen(running.url + "/health", timeout=5) as response:
        assert response.status == 200
    assert post(running.url, "/score", {"pairs": [PAIR]})[1]["scores"] == before
    kept = [s for s, answer in zip(attacker, refused) if not answer]
    assert len(kept) == 6  # the attacker's own six were never evicted for its refused ones
    for s in kept:
      s.settimeout(0.1)
      with pytest.raises(socket.timeout):
        s.recv(1)
  finally:
    running.stop()


def test_stop_finishes_in_flight_work_within_the_grace_period():
  reward = tiny_reward()
  slowed(reward, 0.5)
  server = RewardServer(reward)
  running = serve_in_background(server, grace_s=5)
  answers = []
  worker = threading.Thread(target=lambda: answers.append(
      post(running.url, "/score", {"pairs": [PAIR]})))
  worker.start()
  time.sleep(0.1)
  started = time.monotonic()
  running.stop()
  worker.join()
  assert answers[0][0] == 200 and time.monotonic() - started < 5
  with pytest.raises(OSError):
    urllib.request.urlopen(running.url + "/health", timeout=5)


def test_stop_fails_work_left_at_the_end_of_the_grace_period():
  reward = tiny_reward()
  slowed(reward, 3.0)
  running = serve_in_background(RewardServer(reward), grace_s=0.5)
  answers = []

  def ask():
    try:
      answers.append(post(running.url, "/score", {"pairs": [PAIR]})[0])
    except (OSError, urllib.error.URLError):
      answers.append("closed")
  worker = threading.Thread(target=ask)
  worker.start()
  time.sleep(0.1)
  started = time.monotonic()
  running.stop()
  worker.join()
  assert time.monotonic() - started < 2.5 and answers == ["closed"]


def test_sigterm_with_slow_clients_exits_within_the_grace_period():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  process = subprocess.Popen([sys.executable, "-m", "tests.helpers.slow_serve_worker",
                              str(port), "10", "1"], cwd=root, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  url = f"http://127.0.0.1:{port}"
  try:
    while True:
      assert process.poll() is None, process.stderr.read().decode()[-2000:]
      try:
        urllib.request.urlopen(url + "/health", timeout=5)
        break
      except OSError:
        time.sleep(0.3)
    busy = threading.Thread(target=lambda: _quietly(post, url, "/score", {"pairs": [PAIR]}))
    busy.start()  # its batch holds the device thread for 10 s
    slow = []
    for _ in range(4):  # clients sending their body slowly, and idle keep-alive sockets
      s = socket.create_connection(("127.0.0.1", port))
      s.sendall(b"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                b"\r\nContent-Length: 1000\r\n\r\n{")
      slow += [s, socket.create_connection(("127.0.0.1", port))]
    time.sleep(1.0)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert time.monotonic() - started < 1 + 1.5  # grace_s 1; the device's batch has 9 s left
    busy.join(10)
    for s in slow:
      s.close()
  finally:
    process.kill()


def _quietly(function, *args):
  try:
    return function(*args)
  except OSError:
    return None
