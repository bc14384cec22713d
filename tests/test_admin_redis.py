"""The Redis store's admin scripts on a real redis-server: pages of lanes,
pending and leased items, a lane's release, reprioritising a pending row."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from twisted.internet import defer

from fetchq.store import NewItem
from fetchq.store.redis import ALL_LANES
from tests.test_store_redis import RedisTestCase


class AdminScriptTests(RedisTestCase):
    @defer.inlineCallbacks
    def test_pages_release_and_reprioritize(self) -> Generator[Any, Any, None]:
        """lanes_page sorts lanes by backlog with their holds; pending_page
        lists a lane's items in claim order, page by page; a claimed item
        shows in leased_page with its worker; release_lane ends a hold (and
        a claim then hands the lane out); reprioritize moves a pending item
        to the front, refuses a claimed one and raises for an unknown id."""
        store = yield self.connect()
        items = [NewItem(f"a{n}", {"url": f"u{n}"}, key="a") for n in range(5)]
        items += [NewItem(f"b{n}", {"url": f"v{n}"}, key="b") for n in range(2)]
        yield store.add(items)
        yield store.hold_lane("b", 60)
        page = yield store.lanes_page(0, 10)
        self.assertEqual([lane["key"] for lane in page["lanes"]], ["a", "b"])
        self.assertEqual([lane["pending"] for lane in page["lanes"]], [5, 2])
        self.assertIsNotNone(page["lanes"][1]["held_until"])
        first, more = yield store.pending_page("a", 0, 2)
        self.assertEqual(([i.id for i in first], more), (["a0", "a1"], True))
        rest, more = yield store.pending_page("a", 2, 10)
        self.assertEqual(([i.id for i in rest], more), (["a2", "a3", "a4"], False))
        every, _ = yield store.pending_page(ALL_LANES, 0, 10)
        self.assertEqual(len(every), 7)

        claimed = yield store.claim(10, 0.0, 30.0, per_lane=1, limits=True)
        self.assertEqual([c.id for c in claimed], ["a0"])  # b is held
        total, leased = yield store.leased_page(0, 10)
        self.assertEqual(
            (total, leased[0][0].id, leased[0][2]), (1, "a0", store.worker)
        )
        self.assertTrue((yield store.release_lane("b")))
        self.assertFalse((yield store.release_lane("b")))
        claimed = yield store.claim(10, 0.0, 30.0, per_lane=1, limits=True)
        self.assertIn("b0", [c.id for c in claimed])

        self.assertTrue((yield store.reprioritize("a4", -1)))
        head, _ = yield store.pending_page("a", 0, 1)
        self.assertEqual(head[0].id, "a4")
        self.assertFalse((yield store.reprioritize("a0", -1)))  # claimed
        yield self.assertFailure(store.reprioritize("nope", 1), KeyError)
