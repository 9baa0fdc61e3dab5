"""Model-based test: Hypothesis drives three real IMAP sessions on one account and checks every reply against a small model.

The model is a dict of folders (name -> Folder: messages by UID with their bytes and flags) and,
per session, the list of UIDs the session's sequence numbers stand for (its "view"). Rules send
APPEND, UID STORE / STORE, UID COPY, UID MOVE, EXPUNGE, UID EXPUNGE, CLOSE, CREATE, DELETE, RENAME,
SELECT, EXAMINE and UID SEARCH by flag over loopback and check:

- OK / NO exactly when the model says so (RFC 3501 §6.3, §6.4; RFC 4315 UIDPLUS; RFC 6851 MOVE);
- APPENDUID / COPYUID: a UID is never given twice in a folder, and always above every UID the folder
  ever had (RFC 3501 §2.3.1.1): (name, UIDVALIDITY, UID) never names two different messages;
- every untagged EXISTS / EXPUNGE / FETCH: after a command that may report expunges (RFC 3501 §7.4.1),
  the session's view equals the folder's UIDs; after STORE by number it may only lag by expunges;
- a session whose selected folder another session deleted or renamed ends with BYE on its next command;
- FETCH of everything (UID, FLAGS, the bytes) equals the model, and the final tree and contents do.

Each example gets a fresh account on one module-wide server. make test runs 50 examples of up to
40 steps on SQLite and 16 on PostgreSQL, make test-quick 5 short ones. IMAP_MODEL_EXAMPLES /
IMAP_MODEL_STEPS make a longer hunt (``IMAP_MODEL_EXAMPLES=300 IMAP_MODEL_STEPS=120 pytest -s -k
follow_the_model tests/protocol/imap/test_imap_model.py``).
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.conftest import _create_pg_database

from .harness import ImapServer, Raw

EXAMPLES = int(os.environ.get("IMAP_MODEL_EXAMPLES", "50"))
STEPS = int(os.environ.get("IMAP_MODEL_STEPS", "40"))
SESSIONS = 3
NAMES = ["INBOX", "Trash", "A", "B", "A/X", "B/X"]  # few, so that names collide and folders nest
FLAGS = ["\\Seen", "\\Flagged", "\\Deleted", "\\Answered", "$Work"]
_counter = itertools.count(1)
RUNS = {"examples": 0, "steps": 0}  # what the last runs did (printed: pytest -s or -rP)


@dataclass(eq=False)
class Folder:
    """One folder: its messages in UID order; the same object across a rename (its UIDs go with it)."""

    msgs: dict[int, tuple[bytes, frozenset[str]]] = field(default_factory=dict)  # uid -> (bytes, flags)
    uidvalidity: int | None = None  # learnt from the server; a rename gives a new one
    high: int = 0  # the highest UID this folder ever had

    def uids(self) -> list[int]:
        return sorted(self.msgs)


@dataclass(eq=False)
class Sess:
    """One connection: what is selected and the UIDs its sequence numbers stand for."""

    raw: Raw
    tags: itertools.count = field(default_factory=lambda: itertools.count(1))
    folder: Folder | None = None
    read_only: bool = False
    view: list[int] = field(default_factory=list)
    doomed: bool = False  # its folder was deleted or renamed by another session: BYE comes next


def uid_set(text: bytes) -> list[int]:
    out: list[int] = []
    for part in text.split(b","):
        a, _, b = part.partition(b":")
        lo, hi = sorted((int(a), int(b or a)))
        out += range(lo, hi + 1)
    return out


def flag_set(text: bytes) -> frozenset[str]:
    return frozenset(f for f in text.decode().split() if f != "\\Recent")


def quoted(name: str) -> bytes:
    return b'"' + name.encode() + b'"'


_FETCH = re.compile(rb"\* (\d+) FETCH \((.*)\)\r\n\Z", re.S)
_UID = re.compile(rb"\bUID (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_BODY = re.compile(rb"\bBODY\[\] \{(\d+)\}\r\n", re.S)


def _calm(machine: ImapModel) -> bool:
    return not any(s.doomed for s in machine.sessions)


when_calm = precondition(_calm)  # no session waits for its BYE
when_selected = precondition(lambda m: _calm(m) and any(s.folder is not None for s in m.sessions))


class ImapModel(RuleBasedStateMachine):
    """Several sessions on one fresh account against the in-test model."""

    server = None  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        RUNS["examples"] += 1
        self.user = f"model{next(_counter)}@city.test"
        srv = self.server
        srv.run(srv.mb.add_account(self.user, password="secret-pw"))
        self.folders: dict[str, Folder] = {}
        self.seen: dict[tuple[str, int, int], bytes] = {}  # (name, UIDVALIDITY, UID) -> bytes
        self.sessions = [self._connect() for _ in range(SESSIONS)]
        self.folders = {name: Folder() for name in self.listed()}  # INBOX and the default folders, empty
        self.appended = 0

    def _connect(self) -> Sess:
        return Sess(Raw(self.server.port, login=self.user))

    def teardown(self) -> None:
        try:
            self._check_final_state()
        finally:
            for s in self.sessions:
                s.raw.close()

    # --- talking and checking -------------------------------------------------------------

    def listed(self) -> set[str]:
        """The selectable names LIST shows (RFC 3501 §6.3.8)."""
        untagged, tagged = self.send(self.sessions[0], b'LIST "" "*"')
        listed = {}
        for line in (u for u in untagged if u.startswith(b"* LIST ")):
            m = re.match(rb'\* LIST \(([^)]*)\) "/" "?([^"\r]*)"?\r\n', line)
            assert m, line
            listed[m.group(2).decode()] = m.group(1)
        return {n for n, a in listed.items() if b"\\Noselect" not in a and b"\\NonExistent" not in a}

    def send(self, s: Sess, command: bytes, *, allow_expunge: bool = True, literal: bytes | None = None,
             prepare=None, earlier: dict[int, frozenset[str]] | None = None) -> tuple[list[bytes], bytes]:
        """Send one command; apply and check the untagged replies against the session's view.

        ``prepare(untagged, tagged)`` updates the model from the reply before its untagged lines are
        checked (APPENDUID, COPYUID: the session may hear of the new message in the same reply).
        ``earlier``: flags a message may still be shown with before the command's own FETCH (STORE).
        """
        assert not s.doomed, "a doomed session must meet its BYE first"
        tag = b"t%d" % next(s.tags)
        if literal is None:
            untagged, tagged = s.raw.cmd(tag + b" " + command)
        else:
            s.raw.send(tag + b" " + command + b" {%d+}\r\n" % len(literal) + literal + b"\r\n")
            untagged, tagged = s.raw.until(tag)
        assert not tagged.startswith(tag + b" BAD"), (command, tagged)
        if prepare is not None:
            prepare(untagged, tagged)
        self.absorb(s, untagged, earlier or {})
        if s.folder is not None:
            live = s.folder.uids()
            if allow_expunge:  # RFC 3501 §7.4.1: everything is reported after this command
                assert s.view == live, (command, s.view, live, untagged)
            else:  # only expunges may wait
                assert [u for u in s.view if u in s.folder.msgs] == live, (command, s.view, live, untagged)
        return untagged, tagged

    def absorb(self, s: Sess, untagged: list[bytes], earlier: dict[int, frozenset[str]]) -> None:
        """Follow EXPUNGE / EXISTS in the view; check each FETCH's UID and flags (``self.told``: the last by UID)."""
        self.told: dict[int, frozenset[str] | None] = {}
        for line in untagged:
            assert not line.startswith(b"* BYE"), line
            if s.folder is None:
                assert not re.match(rb"\* \d+ (EXISTS|EXPUNGE|FETCH)", line), line
                continue
            if m := re.match(rb"\* (\d+) EXPUNGE\r\n", line):
                n = int(m.group(1))
                assert 1 <= n <= len(s.view), (line, s.view)
                gone = s.view.pop(n - 1)
                assert gone not in s.folder.msgs, f"EXPUNGE of live UID {gone}"
            elif m := re.match(rb"\* (\d+) EXISTS\r\n", line):
                n = int(m.group(1))
                assert n >= len(s.view), (line, s.view)  # EXISTS never shrinks the view (RFC 3501 §7.3.1)
                top = max(s.view, default=0)
                new = [u for u in s.folder.uids() if u > top]
                assert n - len(s.view) <= len(new), (line, s.view, s.folder.uids())
                s.view += new[:n - len(s.view)]
            elif m := _FETCH.match(line):
                n, items = int(m.group(1)), m.group(2)
                assert 1 <= n <= len(s.view), (line, s.view)
                uid = s.view[n - 1]
                if u := _UID.search(items):
                    assert int(u.group(1)) == uid, (line, s.view)
                f = _FLAGS.search(items)
                self.told[uid] = flag_set(f.group(1)) if f else None
                if uid in s.folder.msgs and f:
                    assert self.told[uid] in (s.folder.msgs[uid][1], earlier.get(uid)), (line, s.folder.msgs[uid])
            else:
                assert not re.match(rb"\* (\d+) ", line) or re.match(rb"\* \d+ RECENT", line), line

    def learn(self, name: str, uidvalidity: int, uids: list[int], bodies: list[bytes]) -> None:
        """New UIDs in ``name``: above all it ever had, never naming another message."""
        folder = self.folders[name]
        if folder.uidvalidity is None:
            folder.uidvalidity = uidvalidity
        assert uidvalidity == folder.uidvalidity, (name, uidvalidity, folder.uidvalidity)
        assert uids == sorted(uids) and uids[0] > folder.high, (name, uids, folder.high)
        for uid, body in zip(uids, bodies, strict=True):
            key = (name, uidvalidity, uid)
            assert self.seen.setdefault(key, body) == body, f"UID reused: {key}"
        folder.high = uids[-1]

    def expect(self, tagged: bytes, ok: bool, command: str) -> bool:
        assert tagged.split(b" ")[1] == (b"OK" if ok else b"NO"), (command, tagged, self.tree())
        return ok

    def tree(self) -> dict[str, list[int]]:
        return {n: f.uids() for n, f in self.folders.items()}

    def doom_others(self, s: Sess, folder: Folder) -> None:
        for other in self.sessions:
            if other is not s and other.folder is folder:
                other.doomed = True

    # --- rules -----------------------------------------------------------------------------

    sessions_ = st.integers(0, SESSIONS - 1)
    names = st.sampled_from(NAMES)
    flags = st.sets(st.sampled_from(FLAGS), max_size=3).map(sorted)

    @initialize(messages=st.lists(flags, max_size=4), examine=st.booleans())
    def start(self, messages: list[list[str]], examine: bool) -> None:
        """A few messages in INBOX, selected by two of the sessions, so message rules have work at once."""
        for f in messages:
            self.append(0, "INBOX", f)
        self.select(0, "INBOX", False)
        self.select(1, "INBOX", examine)

    @precondition(lambda self: any(s.doomed for s in self.sessions))
    @rule(command=st.sampled_from([b"NOOP", b"UID FETCH 1:* (FLAGS)", b"UID STORE 1:* +FLAGS (\\Seen)",
                                   b"EXPUNGE", b"UID COPY 1:* INBOX"]))
    def meet_bye(self, command: bytes) -> None:
        """The session whose folder was deleted or renamed elsewhere is ended at its next command, whatever it is.

        Its UIDs name nothing any more (RFC 3501 §2.3.1.1); Dovecot ends such a session with BYE too.
        """
        for i, s in enumerate(self.sessions):
            if s.doomed:
                s.raw.send(b"n " + command + b"\r\n")
                lines = []
                while line := s.raw.line():
                    lines.append(line)
                assert lines == [b"* BYE Selected mailbox was deleted, have to disconnect\r\n"], (command, lines)
                s.raw.close()
                self.sessions[i] = self._connect()

    @when_calm
    @rule(i=sessions_, name=names, flags=flags)
    def append(self, i: int, name: str, flags: list[str]) -> None:
        s = self.sessions[i]
        self.appended += 1
        body = (b"From: a@city.test\r\nSubject: m%d\r\nMessage-ID: <%d.%s@city.test>\r\n\r\nbody %d\r\n"
                % (self.appended, self.appended, self.user.encode(), self.appended))

        def prepare(untagged: list[bytes], tagged: bytes) -> None:
            if not self.expect(tagged, name in self.folders, f"APPEND {name}"):
                assert b"[TRYCREATE]" in tagged, tagged
                return
            m = re.search(rb"\[APPENDUID (\d+) (\d+)\]", tagged)
            assert m, tagged
            self.learn(name, int(m.group(1)), [int(m.group(2))], [body])
            self.folders[name].msgs[int(m.group(2))] = (body, frozenset(flags))

        self.send(s, b"APPEND " + quoted(name) + b" (" + " ".join(flags).encode() + b")", literal=body,
                  prepare=prepare)

    @when_calm
    @rule(i=sessions_, name=names, examine=st.booleans())
    def select(self, i: int, name: str, examine: bool) -> None:
        s = self.sessions[i]
        s.folder, s.view = None, []  # RFC 3501 §6.3.1: a failed SELECT leaves none selected
        untagged, tagged = s.raw.cmd(b"t%d %s %s" % (next(s.tags), b"EXAMINE" if examine else b"SELECT",
                                                     quoted(name)))
        folder = self.folders.get(name)
        if not self.expect(tagged, folder is not None, f"SELECT {name}"):
            return
        text = b"".join(untagged)
        exists = int(re.search(rb"\* (\d+) EXISTS", text).group(1))
        assert exists == len(folder.msgs), (name, text, folder.uids())
        uidvalidity = int(re.search(rb"\[UIDVALIDITY (\d+)\]", text).group(1))
        if folder.uidvalidity is None:
            folder.uidvalidity = uidvalidity
        assert uidvalidity == folder.uidvalidity, (name, uidvalidity, folder.uidvalidity)
        uidnext = int(re.search(rb"\[UIDNEXT (\d+)\]", text).group(1))
        assert uidnext > folder.high, (name, uidnext, folder.high)
        assert (b"[READ-ONLY]" if examine else b"[READ-WRITE]") in tagged, tagged
        s.folder, s.read_only, s.view = folder, examine, folder.uids()

    def pick(self, s: Sess, data) -> tuple[bytes, set[int]]:
        """A UID set for a command in ``s``: some known UIDs, maybe an unknown one, maybe ``1:*``."""
        assert s.folder is not None
        if data.draw(st.integers(0, 5), label="star") == 0:
            return b"1:*", set(s.view)
        known = s.folder.uids() + [s.folder.high + 7]
        chosen = data.draw(st.lists(st.sampled_from(known), min_size=1, max_size=4, unique=True), label="uids")
        return b",".join(b"%d" % u for u in chosen), set(chosen)

    def targets(self, s: Sess, wanted: set[int]) -> list[int]:
        """What a UID command acts on: the UIDs the session knows, still there, that were asked for."""
        assert s.folder is not None
        return [u for u in s.view if u in wanted and u in s.folder.msgs]

    @when_selected
    @rule(i=sessions_, mode=st.sampled_from(["+", "-", ""]), flags=flags, by_uid=st.booleans(), data=st.data())
    def store(self, i: int, mode: str, flags: list[str], by_uid: bool, data) -> None:
        s = self.sessions[i]
        if s.folder is None:
            return
        if by_uid:
            uids, wanted = self.pick(s, data)
            hit = self.targets(s, wanted)
            command = b"UID STORE " + uids
        else:  # by number, in the session's own numbering (RFC 3501 §7.4.1: no EXPUNGE in the reply)
            if not s.view:
                return
            numbers = data.draw(st.lists(st.integers(1, len(s.view)), min_size=1, max_size=3, unique=True))
            hit = [s.view[n - 1] for n in sorted(numbers) if s.view[n - 1] in s.folder.msgs]
            command = b"STORE " + b",".join(b"%d" % n for n in numbers)
        command += b" " + mode.encode() + b"FLAGS (" + " ".join(flags).encode() + b")"
        before = {uid: s.folder.msgs[uid][1] for uid in hit}
        if not s.read_only:  # apply before the reply is checked: its FETCH lines show the new flags
            for uid in hit:
                body, old = s.folder.msgs[uid]
                new = {"+": old | set(flags), "-": old - set(flags), "": frozenset(flags)}[mode]
                s.folder.msgs[uid] = (body, frozenset(new))
        # Other sessions' changes to these messages may be told first (with the flags before this STORE).
        untagged, tagged = self.send(s, command, allow_expunge=by_uid, earlier=before)
        if not self.expect(tagged, not s.read_only, "STORE"):
            assert b"[READ-ONLY]" in tagged
            return
        for uid in hit:  # RFC 3501 §6.4.6: each one's new flags, last
            assert self.told.get(uid) == s.folder.msgs[uid][1], (uid, self.told, untagged)

    def _copy_or_move(self, s: Sess, name: str, move: bool, data) -> None:
        assert s.folder is not None
        uids, wanted = self.pick(s, data)
        src = s.folder
        moving = self.targets(s, wanted)
        dest = self.folders.get(name)
        ok = dest is not None and not (move and s.read_only)
        bodies = [src.msgs[u] for u in moving]
        if ok and move:  # the expunges come in the reply
            for u in moving:
                del src.msgs[u]
        verb = b"UID MOVE " if move else b"UID COPY "

        def prepare(untagged: list[bytes], tagged: bytes) -> None:
            if not self.expect(tagged, ok, f"{verb.decode()}{name}"):
                assert (b"[READ-ONLY]" if move and s.read_only else b"[TRYCREATE]") in tagged, tagged
                return
            assert dest is not None
            m = re.search(rb"\[COPYUID (\d+) ([\d:,]+) ([\d:,]+)\]", b"".join(untagged) + tagged)
            if not moving:
                assert m is None, (untagged, tagged)
                return
            assert m, (untagged, tagged)
            assert uid_set(m.group(2)) == moving, (m.group(0), moving)
            new = uid_set(m.group(3))
            self.learn(name, int(m.group(1)), new, [b for b, _ in bodies])
            dest.msgs.update(zip(new, bodies))

        self.send(s, verb + uids + b" " + quoted(name), prepare=prepare)

    @when_selected
    @rule(i=sessions_, name=names, move=st.booleans(), data=st.data())
    def copy_or_move(self, i: int, name: str, move: bool, data) -> None:
        s = self.sessions[i]
        if s.folder is not None:
            self._copy_or_move(s, name, move, data)

    @when_selected
    @rule(i=sessions_, by_uid=st.booleans(), data=st.data())
    def expunge(self, i: int, by_uid: bool, data) -> None:
        s = self.sessions[i]
        if s.folder is None:
            return
        if by_uid:  # RFC 4315 §2.1: only the \Deleted ones among the UIDs given
            uids, wanted = self.pick(s, data)
            gone = [u for u in self.targets(s, wanted) if "\\Deleted" in s.folder.msgs[u][1]]
            command = b"UID EXPUNGE " + uids
        else:  # every \Deleted message, also those the session has not heard of yet
            gone = [u for u, (_, f) in s.folder.msgs.items() if "\\Deleted" in f]
            command = b"EXPUNGE"
        if not s.read_only:
            for u in gone:
                del s.folder.msgs[u]
        _, tagged = self.send(s, command)
        if not self.expect(tagged, not s.read_only, command.decode()):
            assert b"[READ-ONLY]" in tagged

    @when_selected
    @rule(i=sessions_)
    def close(self, i: int) -> None:
        s = self.sessions[i]
        if s.folder is None:
            return
        if not s.read_only:  # RFC 3501 §6.4.2: expunged silently
            for u in [u for u, (_, f) in s.folder.msgs.items() if "\\Deleted" in f]:
                del s.folder.msgs[u]
        untagged, tagged = s.raw.cmd(b"t%d CLOSE" % next(s.tags))
        s.folder, s.view = None, []
        assert not any(b"EXPUNGE" in u for u in untagged), untagged
        self.expect(tagged, True, "CLOSE")

    @when_calm
    @rule(i=sessions_, name=names)
    def create(self, i: int, name: str) -> None:
        s = self.sessions[i]
        _, tagged = self.send(s, b"CREATE " + quoted(name))
        if self.expect(tagged, name not in self.folders, f"CREATE {name}"):
            parts = name.split("/")
            for k in range(1, len(parts) + 1):  # RFC 3501 §6.3.3: superior names are created too
                self.folders.setdefault("/".join(parts[:k]), Folder())

    @when_calm
    @rule(i=sessions_, name=names)
    def delete(self, i: int, name: str) -> None:
        s = self.sessions[i]
        folder = self.folders.get(name)
        ok = folder is not None and name != "INBOX"
        if ok and s.folder is folder:  # the session's own selected folder: it is closed
            s.folder, s.view = None, []
        _, tagged = self.send(s, b"DELETE " + quoted(name))
        if self.expect(tagged, ok, f"DELETE {name}"):
            del self.folders[name]  # its children stay (RFC 3501 §6.3.4)
            self.doom_others(s, folder)

    @when_calm
    @rule(i=sessions_, old=names, new=names)
    def rename(self, i: int, old: str, new: str) -> None:
        s = self.sessions[i]
        if new.startswith(old + "/"):
            return  # into its own child: issue 14 item 1 decides that one
        moving = {n: f for n, f in self.folders.items() if n == old or n.startswith(old + "/")}
        if old == "INBOX":
            moving = {"INBOX": self.folders["INBOX"]}  # RFC 3501 §6.3.5: its messages move, it stays
        renamed = {new + n[len(old):]: f for n, f in moving.items()}
        # a name taken by a folder that moves itself is free (RENAME B/X B when B/X has a child B/X/X)
        ok = (old in self.folders and new not in ("INBOX", old)
              and not (set(renamed) & (set(self.folders) - set(moving))))
        if not ok:
            _, tagged = self.send(s, b"RENAME %s %s" % (quoted(old), quoted(new)))
            self.expect(tagged, False, f"RENAME {old} {new}")
            return
        if old == "INBOX":
            inbox = self.folders["INBOX"]
            self.folders[new] = Folder()
            bodies = [inbox.msgs[u] for u in inbox.uids()]
            inbox.msgs.clear()
            _, tagged = self.send(s, b"RENAME %s %s" % (quoted(old), quoted(new)))
            self.expect(tagged, True, f"RENAME INBOX {new}")
            parts = new.split("/")
            for k in range(1, len(parts)):
                self.folders.setdefault("/".join(parts[:k]), Folder())
            self.folders[new].msgs.update(zip(range(1, len(bodies) + 1), bodies))  # fresh folder, UIDs from 1
            self.folders[new].high = len(bodies)
            return
        _, tagged = self.send(s, b"RENAME %s %s" % (quoted(old), quoted(new)))
        self.expect(tagged, True, f"RENAME {old} {new}")
        for n in moving:
            del self.folders[n]
        for n, f in renamed.items():
            self.folders[n] = f
            f.uidvalidity = None  # RFC 3501 §2.3.1.1: a name used before gets a greater UIDVALIDITY
            self.doom_others(s, f)  # children too: each has a new UIDVALIDITY

    @when_selected
    @rule(i=sessions_, flag=st.sampled_from(FLAGS), negated=st.booleans())
    def search_flag(self, i: int, flag: str, negated: bool) -> None:
        """UID SEARCH by a flag: the session's messages that have it (or not) now, other sessions' STOREs too."""
        s = self.sessions[i]
        if s.folder is None:
            return
        key = {"\\Seen": "SEEN", "\\Flagged": "FLAGGED", "\\Deleted": "DELETED", "\\Answered": "ANSWERED"}.get(
            flag, f"KEYWORD {flag}")
        known = [u for u in s.view if u in s.folder.msgs]  # searched: what the session knows, still there
        want = {u for u in known if (flag in s.folder.msgs[u][1]) != negated}
        untagged, tagged = self.send(s, b"UID SEARCH " + (b"NOT " if negated else b"") + key.encode())
        self.expect(tagged, True, "UID SEARCH")
        [line] = [u for u in untagged if u.startswith(b"* SEARCH")]
        found = {int(n) for n in line.split()[2:]}
        assert found & set(known) == want, (key, negated, found, want, untagged)

    @when_selected
    @rule(i=sessions_)
    def noop_and_fetch_all(self, i: int) -> None:
        """After NOOP the session knows every change; FETCH 1:* shows each message as the model has it."""
        s = self.sessions[i]
        if s.folder is None:
            return
        self.send(s, b"NOOP")
        untagged, tagged = self.send(s, b"FETCH 1:* (UID FLAGS BODY.PEEK[])", allow_expunge=False)
        self.expect(tagged, True, "FETCH")
        got = {}
        for line in untagged:
            m = _FETCH.match(line)
            assert m, line
            body = _BODY.search(m.group(2))
            start = body.end()
            got[int(_UID.search(m.group(2)).group(1))] = m.group(2)[start:start + int(body.group(1))]
        assert got == {u: b for u, (b, _) in s.folder.msgs.items()}, (got, s.folder.msgs)

    @invariant()
    def uids_are_ordered(self) -> None:
        RUNS["steps"] += 1  # an invariant runs after each step
        for s in self.sessions:
            assert s.view == sorted(set(s.view))

    # --- the final state --------------------------------------------------------------------

    def _check_final_state(self) -> None:
        """A new session finds the model's tree, and each folder's messages, flags and bytes."""
        for s in self.sessions:
            s.raw.close()
        self.sessions = [self._connect()]
        assert self.listed() == set(self.folders), self.tree()
        for name in self.folders:
            self.select(0, name, examine=True)
            self.noop_and_fetch_all(0)


def run_model(server: ImapServer, examples: int, steps: int) -> None:
    """Run the machine on ``server``; print how many examples and steps it took (pytest -s / -rP)."""
    ImapModel.server = server
    RUNS.update(examples=0, steps=0)
    run_state_machine_as_test(ImapModel, settings=settings(
        max_examples=examples, stateful_step_count=steps, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    print(f"IMAP model on {server.storage_url.split(':')[0]}: {RUNS['examples']} examples, {RUNS['steps']} steps")


@pytest.mark.slow
@pytest.mark.timeout(max(300, EXAMPLES * STEPS // 4))  # a long hunt by the environment variables
def test_imap_sessions_follow_the_model(module_server):
    run_model(module_server, EXAMPLES, STEPS)


@pytest.mark.slow
@pytest.mark.pg
@pytest.mark.timeout(max(300, EXAMPLES * STEPS // 4))
def test_imap_sessions_follow_the_model_on_postgresql(pg, tmp_path):
    """The same on PostgreSQL (its locking and isolation differ from SQLite's), fewer examples."""
    name = "t_model_" + uuid.uuid4().hex[:8]
    _create_pg_database(pg, name)
    srv = ImapServer(tmp_path, storage_url=pg.url(name)).start()
    try:
        run_model(srv, max(EXAMPLES // 3, 5), STEPS)
    finally:
        srv.stop()


@pytest.mark.slow
def test_imap_sessions_follow_the_model_briefly(module_server):
    """A few short runs for make test-quick."""
    run_model(module_server, 5, 15)


def test_renaming_a_parent_ends_the_sessions_on_its_children(module_server):
    """Found while writing the model: after RENAME A B elsewhere, a session on A/X went on reading B/X with FETCH,
    got NO [NONEXISTENT] for STORE and BYE for NOOP (the rename told only the sessions on A).

    Now every renamed folder is announced, and whatever the next command is, it ends the session.
    """
    user = f"model{next(_counter)}@city.test"
    module_server.run(module_server.mb.add_account(user, password="secret-pw"))
    a, b = Raw(module_server.port, login=user), Raw(module_server.port, login=user)
    assert a.cmd(b"1 CREATE A/X")[1].startswith(b"1 OK")
    assert a.cmd(b"2 APPEND A/X {3+}\r\nabc")[1].startswith(b"2 OK [APPENDUID ")
    b.close()
    old, new = "A", "B"
    for command in (b"UID FETCH 1:* (FLAGS)", b"UID STORE 1 +FLAGS (\\Flagged)", b"NOOP"):
        b = Raw(module_server.port, login=user)
        assert b.cmd(b"1 SELECT %s/X" % old.encode())[1].startswith(b"1 OK [READ-WRITE]")
        assert a.cmd(b"3 RENAME %s %s" % (old.encode(), new.encode()))[1] == b"3 OK RENAME completed\r\n"
        b.send(b"2 " + command + b"\r\n")
        assert (b.line(), b.line()) == (b"* BYE Selected mailbox was deleted, have to disconnect\r\n", b""), command
        b.close()
        old, new = new, old
    a.cmd(b"4 EXAMINE %s/X" % old.encode())
    assert a.cmd(b"5 FETCH 1 (FLAGS)")[0] == [b"* 1 FETCH (FLAGS ())\r\n"]  # the STORE never ran
    a.close()
    b.close()


def two_sessions_on_one_message(server: ImapServer) -> tuple[Raw, Raw]:
    """A new account with one message in INBOX, selected read-write by two sessions."""
    user = f"model{next(_counter)}@city.test"
    server.run(server.mb.add_account(user, password="secret-pw"))
    a, b = Raw(server.port, login=user), Raw(server.port, login=user)
    assert a.cmd(b"1 APPEND INBOX {3+}\r\nabc")[1].startswith(b"1 OK")
    assert a.cmd(b"2 SELECT INBOX")[1].startswith(b"2 OK") and b.cmd(b"1 SELECT INBOX")[1].startswith(b"1 OK")
    return a, b


def test_store_reports_the_flags_a_message_has_now(module_server):
    """Found by the model: STORE answered with the session's stale flags for a message it did not change.

    Another session had set \\Seen; ``STORE 1 +FLAGS ()`` replied ``FLAGS (\\Recent)`` and only then
    the update with \\Seen. RFC 3501 §6.4.6: the FETCH gives the flags' new value.
    """
    a, b = two_sessions_on_one_message(module_server)
    assert b.cmd(b"2 STORE 1 +FLAGS (\\Seen)")[0] == [b"* 1 FETCH (FLAGS (\\Seen))\r\n"]
    assert a.cmd(b"3 STORE 1 +FLAGS ()")[0] == [b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))\r\n",
                                                b"* 1 FETCH (FLAGS (\\Seen \\Recent))\r\n"]
    assert b.cmd(b"3 STORE 1 +FLAGS (\\Flagged)")[0] == [b"* 1 FETCH (FLAGS (\\Seen \\Flagged))\r\n"]
    assert a.cmd(b"4 UID STORE 1 -FLAGS (\\Answered)")[0] == [
        b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Flagged \\Recent))\r\n"] * 2
    a.close()
    b.close()


def test_search_sees_flags_another_session_set(module_server):
    """Found by the model: UID SEARCH SEEN missed a message another session had just marked \\Seen.

    The search ran on the session's copy of the flags and the update came after the answer
    (``* SEARCH`` empty, then ``* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))``). SORT had the same.
    """
    a, b = two_sessions_on_one_message(module_server)
    assert b.cmd(b"2 STORE 1 +FLAGS (\\Seen)")[1].startswith(b"2 OK")
    assert a.cmd(b"3 UID SEARCH SEEN")[0] == [b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))\r\n", b"* SEARCH 1\r\n"]
    assert b.cmd(b"3 STORE 1 +FLAGS (\\Flagged)")[1].startswith(b"3 OK")
    assert a.cmd(b"4 SORT (ARRIVAL) UTF-8 FLAGGED")[0] == [
        b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Flagged \\Recent))\r\n", b"* SORT 1\r\n"]
    a.close()
    b.close()
