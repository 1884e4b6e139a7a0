"""A plain aiohttp application on a free loopback port in a background thread: the stand-in
for a remote service (the Hub) that a subprocess under test talks to."""
import asyncio
import contextlib
import threading
from typing import Iterator

from aiohttp import web


@contextlib.contextmanager
def serving(app: web.Application) -> Iterator[str]:
  """Yields the base URL while `app` serves; stops it on exit."""
  loop = asyncio.new_event_loop()
  runner = web.AppRunner(app, access_log=None)
  ready = threading.Event()
  port = []

  def serve() -> None:
    asyncio.set_event_loop(loop)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port.append(runner.addresses[0][1])
    ready.set()
    loop.run_forever()

  thread = threading.Thread(target=serve, daemon=True)
  thread.start()
  if not ready.wait(60):
    raise RuntimeError("the stand-in server did not start in 60 s")
  try:
    yield f"http://127.0.0.1:{port[0]}"
  finally:
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)
