"""Failing fast where a download cannot start: offline, a download retries for minutes first."""

import socket
import threading
import urllib.parse
import urllib.request

DOWNLOAD_CHECK_SECONDS = 5.0


def check_reachable(url: str, timeout: float = DOWNLOAD_CHECK_SECONDS) -> None:
    """Fail in seconds when ``url``'s host (or the HTTPS proxy) cannot be reached.

    Offline, tfds retries its download for minutes before failing, and ``keras.utils.get_file``
    can wait as long. The name lookup runs in a thread because ``getaddrinfo`` takes no
    timeout.
    """
    proxy = urllib.request.getproxies().get(urllib.parse.urlsplit(url).scheme)
    target = urllib.parse.urlsplit(proxy or url)
    host, port = target.hostname, target.port or (80 if target.scheme == "http" else 443)
    failure: list[OSError] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as error:
            failure.append(error)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        reason = f"no answer within {timeout:g} s"
    elif failure:
        reason = f"{type(failure[0]).__name__}: {failure[0]}"
    else:
        return
    via = f" through the proxy {proxy}" if proxy else ""
    raise ConnectionError(f"cannot reach {host}:{port}{via} to download {url} ({reason})")
