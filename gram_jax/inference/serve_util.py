"""Run an aiohttp app (the reward server) in a background thread: tests, benchmarks."""
import asyncio
import threading

from aiohttp import web

from gram_jax.inference.server import RewardServer


class BackgroundApp:
  """Serves `app` on host:port (0 = a free port) from its own event loop thread."""

  def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0):
    self.loop = asyncio.new_event_loop()
    self.runner = web.AppRunner(app)
    ready = threading.Event()

    def serve():
      asyncio.set_event_loop(self.loop)
      self.loop.run_until_complete(self.runner.setup())
      site = web.TCPSite(self.runner, host, port)
      self.loop.run_until_complete(site.start())
      self.port = self.runner.addresses[0][1]
      ready.set()
      self.loop.run_forever()

    self.thread = threading.Thread(target=serve, daemon=True)
    self.thread.start()
    ready.wait(60)
    self.url = f"http://{host}:{self.port}"

  def stop(self) -> None:
    asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
    self.loop.call_soon_threadsafe(self.loop.stop)
    self.thread.join(30)


def serve_in_background(server: RewardServer, host: str = "127.0.0.1",
                        port: int = 0) -> BackgroundApp:
  """The reward server, listening on loopback in a background thread."""
  return BackgroundApp(server.app(), host, port)
