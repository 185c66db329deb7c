"""Test support: the real-broker and real-database fixtures (contract §2) and a TCP proxy
that can cut a connection."""

from .proxy import TcpProxy
from .recording import Recorder, Statement, record, statements
from .waiting import eventually

__all__ = ["Recorder", "Statement", "TcpProxy", "eventually", "record", "statements"]
