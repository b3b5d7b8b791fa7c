"""harness.record: the dataclass behaviour the model classes relied on, kept.

The expectations are what :mod:`dataclasses` does for the same declaration
(Python docs, "dataclasses"): each test builds the dataclass twin and
compares, so the reference is the standard library, not this module.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import ClassVar

import pytest

from harness.igvm import model as m
from harness.record import Factory, Record, astuple, fields, replace


class Base(Record):
    TYPE: ClassVar[int]


class Page(Base):
    gpa: int
    mask: int
    flags: int = 0
    data: bytes | None = None
    tags: list = Factory(list)
    TYPE: ClassVar[int] = 0x302


class BigPage(Page):
    size: int = 0x200000


class Point(Record, frozen=True):
    x: int = 1
    y: str = "a"


@dataclasses.dataclass
class PageDC:
    gpa: int
    mask: int
    flags: int = 0
    data: bytes | None = None
    tags: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class PointDC:
    x: int = 1
    y: str = "a"


def test_construction_equality_and_repr_as_a_dataclass():
    for args, kwargs in [((1, 2), {}), ((1, 2, 3), {"data": b"x"}), ((), {"gpa": 5, "mask": 1})]:
        rec, ref = Page(*args, **kwargs), PageDC(*args, **kwargs)
        assert astuple(rec) == dataclasses.astuple(ref)
        assert repr(rec) == repr(ref).replace("PageDC", "Page")
    assert Page(1, 2) == Page(1, 2) and Page(1, 2) != Page(1, 3)
    assert Page(1, 2).tags is not Page(1, 2).tags  # a Factory default per instance
    assert fields(Page) == tuple(f.name for f in dataclasses.fields(PageDC))
    assert Page.__match_args__ == PageDC.__match_args__
    assert Page(1, 2).TYPE == 0x302 and "TYPE" not in fields(Page)


def test_errors_as_a_dataclass():
    for bad in [lambda c: c(1), lambda c: c(1, 2, 3, 4, [], 5), lambda c: c(1, 2, nope=1)]:
        with pytest.raises(TypeError):
            bad(PageDC)
        with pytest.raises(TypeError):
            bad(Page)
    with pytest.raises(AttributeError):
        Page(1, 2).nope = 1  # __slots__: no stray attributes
    with pytest.raises(TypeError):
        hash(Page(1, 2))  # compared by value and mutable: unhashable, as PageDC
    with pytest.raises(TypeError):
        hash(PageDC(1, 2))


def test_subclass_adds_fields_and_compares_by_class():
    assert fields(BigPage) == fields(Page) + ("size",)
    assert BigPage(1, 2).size == 0x200000
    assert BigPage(1, 2) != Page(1, 2)  # same values, different class (dataclass: likewise)
    assert Page(1, 2) != PageDC(1, 2)


def test_frozen_as_a_dataclass():
    p, ref = Point(), PointDC()
    assert hash(p) == hash(ref)  # both hash the tuple of field values
    with pytest.raises(AttributeError):
        p.x = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.x = 2
    assert replace(p, x=3) == Point(3, "a") and p.x == 1
    assert dataclasses.replace(ref, x=3) == PointDC(3, "a")
    with pytest.raises(TypeError):
        replace(p, z=1)


def test_copy_and_pickle():
    p = Page(1, 2, data=b"abc", tags=[1])
    assert copy.copy(p) == p and copy.deepcopy(p) == p
    assert copy.deepcopy(p).tags is not p.tags
    assert pickle.loads(pickle.dumps(Point(7, "b"))) == Point(7, "b")


def test_default_without_default_order_is_refused():
    with pytest.raises(TypeError):
        class Bad(Record):  # noqa: F841
            a: int = 0
            b: int


def test_declaring_slots_is_refused():
    with pytest.raises(TypeError):
        class Bad(Record):  # noqa: F841
            __slots__ = ("a",)


def test_custom_init_of_a_subclass_reaches_the_parents_fields():
    class Named(Page):
        def __init__(self, gpa: int) -> None:
            super().__init__(gpa, 0xFF)

    assert astuple(Named(4)) == (4, 0xFF, 0, None, [])


def test_model_headers_keep_their_dataclass_api():
    """The header classes: positional and keyword construction, defaults from
    the class body, value equality, as_dict over every field."""
    pd = m.PageData(0x1000, 1, data=b"\1" * 16)
    assert pd == m.PageData(gpa=0x1000, compatibility_mask=1, flags=0, data_type=0,
                            data=b"\1" * 16, reserved=0)
    assert pd.as_dict() == {"type": "PAGE_DATA", "gpa": 0x1000, "compatibility_mask": 1, "flags": 0,
                            "data_type": 0, "data": "01" * 16, "reserved": 0}
    assert fields(m.VpCountParameter) == ("parameter_area_index", "byte_offset")
    assert m.VpCountParameter(0, 8) != m.Srat(0, 8)
    assert "PageData(gpa=4096" in repr(pd)
    f = m.IgvmFile(directives=[pd])
    g = m.IgvmFile(directives=[m.PageData(0x1000, 1, data=b"\1" * 16)], buffer=b"x", offsets=[1])
    assert f == g  # buffer and offsets belong to one serialisation: not compared
    assert "buffer" not in repr(g)


@pytest.mark.parametrize("compile_after", [0, 1000])
def test_generic_and_compiled_initialisers_agree(monkeypatch, compile_after):
    """A class's first instances are built by a generic initialiser, later
    ones by its compiled ``__init__`` (harness.record.COMPILE_AFTER): both
    build what the dataclass twin builds and refuse what it refuses."""
    import harness.record as record

    monkeypatch.setattr(record, "COMPILE_AFTER", compile_after)

    class Fresh(Record):  # a class of its own: nothing compiled yet
        gpa: int
        mask: int
        flags: int = 0
        data: bytes | None = None
        tags: list = Factory(list)

    class FreshPoint(Record, frozen=True):
        x: int = 1
        y: str = "a"

    for args, kwargs in [((1, 2), {}), ((1, 2, 3), {"data": b"x"}), ((), {"gpa": 5, "mask": 1}),
                         ((1,), {"mask": 7, "tags": [1]})]:
        assert astuple(Fresh(*args, **kwargs)) == dataclasses.astuple(PageDC(*args, **kwargs))
    assert Fresh(1, 2).tags is not Fresh(1, 2).tags
    assert astuple(FreshPoint(y="b")) == dataclasses.astuple(PointDC(y="b"))
    with pytest.raises(AttributeError):
        FreshPoint().x = 2
    # built generically until COMPILE_AFTER instances, compiled from then on
    assert (Fresh.__dict__["__init__"] is record._first_init) == (compile_after > 0)
    for bad in [lambda c: c(1), lambda c: c(1, 2, 3, 4, [], 5), lambda c: c(1, 2, nope=1),
                lambda c: c(1, 2, gpa=3)]:
        with pytest.raises(TypeError) as ours:
            bad(Fresh)
        with pytest.raises(TypeError) as theirs:
            bad(PageDC)
        # a wrong call goes to the compiled initialiser: Python's own message
        assert str(ours.value).split("()", 1)[1] == str(theirs.value).split("()", 1)[1]
