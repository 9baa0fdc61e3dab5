"""THREAD (RFC 5256 §2: ORDEREDSUBJECT and REFERENCES) as pure functions over SortRecords, and the thread-list writer.

Implementation notes
- Trees are walked with explicit stacks, never recursion: a chain of 10,000 replies is one
  thread 10,000 deep.
- REFERENCES step 1 must not create loops ("make sure A is not a descendant of B"). The test
  walks up from A and down B's subtree in turns and stops when either ends, so it costs
  twice the smaller of A's depth and B's subtree: a message linked under a long chain has
  few descendants yet, and a long chain is never walked for it.
- Children are kept in insertion-ordered dicts so a re-parented message leaves its old
  parent in O(1).
- Sibling sets are sorted by sent date (§2.2), ties by sequence number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .sorting import SortRecord

ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")


class Node:
    """A message in a thread tree, or a dummy (``record`` None) standing for a referenced message we lack."""

    __slots__ = ("children", "parent", "record")

    def __init__(self, record: SortRecord | None = None) -> None:
        self.record = record
        self.parent: Node | None = None
        self.children: dict[Node, None] = {}

    @property
    def kids(self) -> list[Node]:
        return list(self.children)

    def adopt(self, child: Node) -> None:
        if child.parent is not None:
            del child.parent.children[child]
        child.parent = self
        self.children[child] = None

    def orphan(self) -> None:
        if self.parent is not None:
            del self.parent.children[self]
            self.parent = None


def _key(node: Node) -> tuple[float, int]:
    """Sent date then sequence number; a dummy sorts as its first child (children are sorted first)."""
    while node.record is None:
        node = next(iter(node.children))
    return node.record.sent, node.record.seq


def _under(a: Node, b: Node) -> bool:
    """Whether ``a`` is ``b`` or one of its descendants (up from ``a`` and down from ``b`` in turns)."""
    if a is b:
        return True
    up = a.parent
    down = list(b.children)
    while True:
        if up is None:
            return False
        if up is b:
            return True
        up = up.parent
        if not down:
            return False
        n = down.pop()
        if n is a:
            return True
        down.extend(n.children)


def _preorder(roots: Sequence[Node]) -> list[Node]:
    out: list[Node] = []
    stack = list(reversed(roots))
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(reversed(n.kids))
    return out


def _sort_all(roots: list[Node]) -> list[Node]:
    """RFC 5256 §2 REFERENCES step 6 (and ORDEREDSUBJECT): every sibling set by sent date, deepest first."""
    for n in reversed(_preorder(roots)):
        if len(n.children) > 1:
            n.children = dict.fromkeys(sorted(n.children, key=_key))
    return sorted(roots, key=_key)


def ordered_subject(records: Sequence[SortRecord]) -> list[Node]:
    """RFC 5256 §2 ORDEREDSUBJECT: group by base subject; the first (by sent date) is the parent of the rest."""
    ordered = sorted(records, key=lambda r: (r.facts.subject_key, r.sent, r.seq))
    roots: list[Node] = []
    subject = None
    for r in ordered:
        node = Node(r)
        if roots and r.facts.subject_key == subject:
            roots[-1].adopt(node)  # siblings of the second message, children of the first
        else:
            roots.append(node)
            subject = r.facts.subject_key
    return sorted(roots, key=_key)  # children were added in sent order already


def references(records: Sequence[SortRecord]) -> list[Node]:
    """RFC 5256 §2 REFERENCES (the JWZ algorithm) over ``records`` in sequence order."""
    by_id: dict[str, Node] = {}
    nodes: list[Node] = []

    def container(msgid: str) -> Node:
        node = by_id.get(msgid)
        if node is None:
            node = by_id[msgid] = Node()  # a dummy until a message with that ID turns up
            nodes.append(node)
        return node

    for r in records:
        # (1A) a missing or repeated Message-ID gets a unique one: the node is simply not registered
        mid = r.facts.own_id()
        if mid is not None and mid in by_id and by_id[mid].record is None:
            node = by_id[mid]
            node.record = r
        else:
            node = Node(r)
            nodes.append(node)
            if mid is not None and mid not in by_id:
                by_id[mid] = node
        prev: Node | None = None
        for ref in r.facts.reference_ids():
            cur = container(ref)
            # the first reference is the parent of the second...; keep existing links, make no loops
            if prev is not None and cur.parent is None and not _under(prev, cur):
                prev.adopt(cur)
            prev = cur
        # (1B) the last reference is the parent; a parent from a truncated References is replaced
        node.orphan()
        if prev is not None and not _under(prev, node):
            prev.adopt(node)

    roots = [n for n in nodes if n.parent is None]  # (2)
    roots = _prune(roots)  # (3)
    for n in roots:  # (4) a dummy sorts by its first child
        if n.record is None:
            n.children = dict.fromkeys(sorted(n.children, key=_key))
    roots.sort(key=_key)
    roots = _merge_subjects(roots)  # (5)
    return _sort_all(roots)  # (6)


def _prune(roots: list[Node]) -> list[Node]:
    """Step 3: drop childless dummies; splice other dummies' children into their place (at the top only if one)."""
    for n in reversed(_preorder(roots)):  # children before parents
        if not any(k.record is None for k in n.children):
            continue
        kids: list[Node] = []
        for k in n.children:
            if k.record is None:
                kids.extend(k.children)  # below the top, no dummy survives: promote its children
            else:
                kids.append(k)
        n.children = dict.fromkeys(kids)
        for k in kids:
            k.parent = n
    out: list[Node] = []
    for n in roots:
        if n.record is not None or len(n.children) > 1:
            out.append(n)
        elif n.children:  # a dummy with one child: the child goes to the top
            only = next(iter(n.children))
            only.parent = None
            out.append(only)
    return out


def _thread_subject(n: Node) -> Node:
    return n if n.record is not None else next(iter(n.children))


def _merge_subjects(roots: list[Node]) -> list[Node]:
    """Step 5: gather top-level threads with the same base subject."""
    table: dict[str, Node] = {}
    for n in roots:  # (5B)
        rec = _thread_subject(n).record
        assert rec is not None
        subject = rec.facts.subject_key
        if not subject:
            continue
        old = table.get(subject)
        if old is None:
            table[subject] = n
        elif old.record is not None and (n.record is None or (old.record.facts.is_reply and not rec.facts.is_reply)):
            table[subject] = n
    out: list[Node | None] = list(roots)
    where = {n: i for i, n in enumerate(roots)}
    for i, n in enumerate(roots):  # (5C)
        rec = _thread_subject(n).record
        assert rec is not None
        subject = rec.facts.subject_key
        if not subject:
            continue
        held = table[subject]
        if held is n:
            continue
        out[i] = None
        if held.record is None and n.record is None:
            for k in n.kids:
                held.adopt(k)
        elif held.record is None or (n.record is not None and rec.facts.is_reply
                                     and not held.record.facts.is_reply):
            held.adopt(n)
        else:
            dummy = Node()
            j = where[held]
            out[j] = dummy
            where[dummy] = j
            dummy.adopt(held)
            dummy.adopt(n)
            table[subject] = dummy
    return [n for n in out if n is not None]


def thread(algorithm: str, records: Sequence[SortRecord]) -> list[Node]:
    return references(records) if algorithm == "REFERENCES" else ordered_subject(records)


def thread_lists(roots: Sequence[Node], number: Callable[[SortRecord], int]) -> bytes:
    """RFC 5256 §4 thread-list for each root, e.g. ``(2)(3 6 (4 23)(44 7 96))``; a dummy writes no number."""
    out: list[bytes] = []
    last_number = False
    stack: list[Node | bytes] = []
    for root in reversed(roots):
        stack += [b")", root, b"("]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            if item == b"(" and last_number:
                out.append(b" ")
            out.append(item)
            last_number = False
            continue
        node: Node | None = item
        while node is not None:
            if node.record is not None:
                if last_number:
                    out.append(b" ")
                out.append(b"%d" % number(node.record))
                last_number = True
            kids = node.kids
            if len(kids) == 1:
                node = kids[0]
                continue
            for k in reversed(kids):
                stack += [b")", k, b"("]
            node = None
    return b"".join(out)
