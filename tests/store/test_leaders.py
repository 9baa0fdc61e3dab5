"""Department leaders (issue 13): set, read in the tree, walked up, cleared by account removal (SQLite and PG)."""

from __future__ import annotations

import pytest

from mailboxes.errors import InvalidInput, NotFound
from mailboxes.leaders import DepartmentLeaders, Node, chain, leader_for, leads


async def test_leaders_are_set_walked_up_and_cleared_with_the_account(mb):
    d = mb.directory
    await d.add_department("city", "市局")
    await d.add_department("fin", "财务处", parent="city")
    await d.add_department("audit", "审计科", parent="fin")
    for who, dept in (("boss", "city"), ("fa", "fin"), ("a1", "audit"), ("off", None)):
        await mb.add_account(f"{who}@city.test", password="pw", department=dept)
    lead = DepartmentLeaders(mb.router.central)
    assert (await lead.set("CITY", "Boss@City.test")).leader == "boss@city.test"
    await lead.set("fin", "fa@city.test")
    with pytest.raises(NotFound):
        await lead.set("fin", "nobody@city.test")
    with pytest.raises(NotFound):
        await lead.set("nosuch", "fa@city.test")
    await d.set_enabled("off@city.test", False)
    with pytest.raises(InvalidInput):
        await lead.set("audit", "off@city.test")

    tree = await lead.tree()
    ids = {dep.code: dep.id for dep in await d.list_departments()}
    assert leader_for(tree, ids["audit"], "a1@city.test") == "fa@city.test"  # audit has none: fin's
    assert leader_for(tree, ids["fin"], "fa@city.test") == "boss@city.test"  # a leader's own: the next up
    assert leader_for(tree, ids["city"], "boss@city.test") is None  # the top leader's own: the office
    assert leader_for(tree, None, "x@city.test") is None
    assert leads(tree, "fa@city.test") and not leads(tree, "a1@city.test")
    assert {dep.code: dep.leader for dep in await d.list_departments()} == {
        "city": "boss@city.test", "fin": "fa@city.test", "audit": None}

    await d.remove_account("fa@city.test")
    assert (await lead.tree())[ids["fin"]].leader is None
    assert leader_for(await lead.tree(), ids["audit"], "a1@city.test") == "boss@city.test"
    await d.set_enabled("boss@city.test", False)  # a disabled leader approves nothing: the office does
    assert leader_for(await lead.tree(), ids["audit"], "a1@city.test") is None


def test_a_damaged_tree_with_a_cycle_is_walked_once():
    tree = {1: Node(1, 2, None), 2: Node(2, 1, None)}
    assert [n.id for n in chain(tree, 1)] == [1, 2]
    assert leader_for(tree, 1, "x@city.test") is None
