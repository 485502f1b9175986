from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from support.certs import CA
from support.servers import FeedServer, Receiver

SAMPLES = Path(__file__).parent / "data" / "samples"


@pytest.fixture
def ca() -> CA:
    return CA()


@pytest.fixture
async def feed(nursery: trio.Nursery) -> FeedServer:
    return await FeedServer().start(nursery)


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> AsyncIterator[Receiver]:
    r = await Receiver().start(nursery)
    yield r
    r.stop()
