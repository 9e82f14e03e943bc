"""downloads.check_reachable: an unreachable host fails in seconds, through the proxy if any."""

import socket
import time
import urllib.request

import pytest

from keras_resnet import downloads


def test_check_reachable_gives_up_after_its_timeout(monkeypatch):
    def hang(address, timeout=None):
        time.sleep(1)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=r"cannot reach example\.org:443 .*within 0\.2 s"):
        downloads.check_reachable("https://example.org/data.tar.gz", timeout=0.2)
    assert time.monotonic() - started < 2


def test_check_reachable_goes_through_the_https_proxy(monkeypatch):
    connected = []

    class Connection:
        def close(self):
            pass

    def connect(address, timeout=None):
        connected.append(address)
        return Connection()

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setattr(
        urllib.request, "getproxies", lambda: {"https": "http://proxy.example:3128"}
    )
    downloads.check_reachable("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz")
    assert connected == [("proxy.example", 3128)]
