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
  """An attacker at another address (127.0.0.2, as a remote one would be) opening idle
  sockets holds at most max_connections_per_peer: past it, each newcomer either takes the
  place of one of its own that has been silent for 0.5 s or gets 503; nobody else is
  evicted and others are served."""
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
    time.sleep(1.0)  # the server has accepted every one
    answers = []
    for s in attacker:
      s.settimeout(0.3)
      try:
        answers.append(s.recv(4096) or b"closed")
      except socket.timeout:
        answers.append(b"")
      except ConnectionResetError:
        answers.append(b"closed")
    refused = sum(answer.startswith(b"HTTP/1.1 503") for answer in answers)
    assert refused + answers.count(b"closed") == 14, answers
    assert all(b"max_connections_per_peer" in a for a in answers if a.startswith(b"HTTP"))
    for _ in range(20):  # fresh connections from 127.0.0.1 each time
      with urllib.request.urlopen(running.url + "/health", timeout=5) as response:
        assert response.status == 200
    assert post(running.url, "/score", {"pairs": [PAIR]})[1]["scores"] == before
    kept = [s for s, answer in zip(attacker, answers) if not answer]
    assert len(kept) == 6  # it holds its cap, and only that
    for s in kept:
      s.settimeout(0.1)
      with pytest.raises(socket.timeout):
        s.recv(1)
  finally:
    running.stop()


HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def kept_alive(port: int, address: str) -> socket.socket:
  """A connection from `address` that has sent one request, read its answer and stays open
  (HTTP/1.1 keeps it alive)."""
  s = socket.socket()
  s.bind((address, 0))
  s.connect(("127.0.0.1", port))
  s.sendall(HEALTH)
  s.settimeout(30)
  answer = b""
  while not (answer.endswith(b"}") or answer.endswith(b"\n")) or b"\r\n\r\n" not in answer:
    chunk = s.recv(65536)
    assert chunk, f"closed before answering: {answer!r}"
    answer += chunk
  assert answer.startswith(b"HTTP/1.1 200"), answer
  return s


def closed_by_server(s: socket.socket, within: float) -> bool:
  s.settimeout(within)
  try:
    return s.recv(1) == b""
  except socket.timeout:
    return False
  except ConnectionResetError:
    return True


def test_kept_alive_connections_cannot_hold_the_slots():
  """Connections that each sent one request and then stay open (keep-alive, no key needed)
  from two addresses fill every slot: the longest idle makes room, so /health and /score
  answer 200 and scores are unchanged."""
  running = serve_in_background(RewardServer(tiny_reward(), Limits(
      max_connections=8, max_connections_per_peer=4)))
  try:
    before = post(running.url, "/score", {"pairs": [PAIR]})[1]["scores"]
    held = [kept_alive(running.port, address) for address in ("127.0.0.2", "127.0.0.3")
            for _ in range(4)]
    time.sleep(0.6)  # idle long enough to make room (a younger one may be about to send)
    for _ in range(3):
      with urllib.request.urlopen(running.url + "/health", timeout=5) as response:
        assert response.status == 200
    assert post(running.url, "/score", {"pairs": [PAIR]})[1]["scores"] == before
    assert closed_by_server(held[0], within=5)  # the longest idle gave its slot up
    for s in held:
      s.close()
  finally:
    running.stop()


def test_kept_alive_connections_close_after_keepalive_s():
  running = serve_in_background(RewardServer(tiny_reward(), Limits(keepalive_s=1.0)))
  try:
    s = kept_alive(running.port, "127.0.0.1")
    started = time.monotonic()
    assert closed_by_server(s, within=10)
    assert 0.8 < time.monotonic() - started < 5
    s.close()
  finally:
    running.stop()


def test_a_peer_at_its_cap_gives_up_its_own_longest_idle_connection():
  """A client whose address already holds its cap of idle kept-alive connections is served;
  its own longest-idle connection makes room, another address's does not."""
  running = serve_in_background(RewardServer(tiny_reward(), Limits(
      max_connections=16, max_connections_per_peer=3)))
  try:
    other = kept_alive(running.port, "127.0.0.3")
    own = [kept_alive(running.port, "127.0.0.2") for _ in range(3)]
    time.sleep(0.6)
    newcomer = kept_alive(running.port, "127.0.0.2")  # asserts its 200
    assert closed_by_server(own[0], within=5)
    assert not closed_by_server(other, within=0.3)
    assert not any(closed_by_server(s, within=0.1) for s in own[1:])
    for s in (other, *own, newcomer):
      s.close()
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


def test_at_the_cap_the_address_holding_the_most_gives_up_a_connection():
  """A client with two idle connections keeps them while an address holding six gives one
  up for the newcomer, however long each has been idle."""
  running = serve_in_background(RewardServer(tiny_reward(), Limits(
      max_connections=8, max_connections_per_peer=6)))
  try:
    few = [kept_alive(running.port, "127.0.0.3") for _ in range(2)]  # the longest idle
    many = [kept_alive(running.port, "127.0.0.2") for _ in range(6)]
    time.sleep(0.6)
    with urllib.request.urlopen(running.url + "/health", timeout=5) as response:
      assert response.status == 200
    assert closed_by_server(many[0], within=5)
    assert not any(closed_by_server(s, within=0.2) for s in few)
    for s in (*few, *many):
      s.close()
  finally:
    running.stop()
