"""Keep-alive HTTP sessions of a serve job's threads."""

from __future__ import annotations

import threading

import requests
import requests.adapters


class Sessions:
    """One keep-alive :class:`requests.Session` per thread and Segment host."""

    def __init__(self, pool_size: int) -> None:
        self.pool_size = pool_size
        self._local = threading.local()
        self._all: list[requests.Session] = []
        self._lock = threading.Lock()

    def get(self, api_host: str) -> requests.Session:
        mine: dict[str, requests.Session] | None = getattr(
            self._local, "sessions", None
        )
        if mine is None:
            mine = self._local.sessions = {}
        session = mine.get(api_host)
        if session is None:
            session = mine[api_host] = requests.Session()
            adapter = requests.adapters.HTTPAdapter(
                pool_connections=1, pool_maxsize=self.pool_size
            )
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            with self._lock:
                self._all.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            for session in self._all:
                session.close()
            self._all.clear()
