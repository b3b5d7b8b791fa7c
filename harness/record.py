"""Plain ``__slots__`` value classes, declared like dataclasses, cheap to import.

Why not :mod:`dataclasses`: importing it pulls in ``inspect``, ``ast``,
``dis`` and ``tokenize`` (about 6 ms), and ``@dataclass(slots=True)``
creates every class twice and compiles its methods at import time (about
0.3 ms a class).  ``igvm-harness measure`` imports some 30 such classes
before it hashes a byte (issue 12: start-up no slower than sev-snp-measure).

A :class:`Record` subclass is declared with annotated fields and defaults,
as a dataclass is::

    class PageData(Record):
        gpa: int
        data: bytes | None = None
        TYPE: ClassVar[int] = 0x302    # ClassVar: a class attribute, not a field
        EXTRA = 1                      # not annotated: a class attribute

The metaclass turns the annotations into ``__slots__`` while the class is
created (once) and provides what the harness used of dataclasses: keyword
or positional construction with defaults, value equality (same class, same
field values), a ``Name(field=value, ...)`` repr, :func:`fields`,
:func:`replace`, :func:`astuple`, ``__match_args__``, copy and pickle
support, and ``frozen=True`` (no assignment after construction; hashable).
A mutable default is given as ``Factory(list)``: each instance gets its own.

``__init__`` is compiled from the field list the first time a class is
instantiated, not when it is defined: a per-instance loop over the fields
would make parsing a 65,536-page file five times slower, and compiling
every class's initialiser at import costs 70 us a class, mostly for
classes a command never builds.
"""

from __future__ import annotations

__all__ = ["Factory", "Record", "astuple", "fields", "replace"]

_MISSING = object()


class Factory:
    """A default made fresh for every instance (``Factory(list)``)."""

    __slots__ = ("make",)

    def __init__(self, make) -> None:
        self.make = make

    def __repr__(self) -> str:
        return f"Factory({getattr(self.make, '__name__', self.make)!r})"


def _is_classvar(annotation) -> bool:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return text.startswith(("ClassVar", "typing.ClassVar"))


class _RecordMeta(type):
    """Builds ``__slots__`` and the field table from the class body's annotations."""

    def __new__(mcs, name, bases, ns, frozen: bool | None = None, **kw):
        own: list[str] = []
        defaults: dict = {}
        for field_name, annotation in ns.get("__annotations__", {}).items():
            if _is_classvar(annotation):
                continue
            own.append(field_name)
            if field_name in ns:
                defaults[field_name] = ns.pop(field_name)
        if "__slots__" in ns:
            raise TypeError(f"{name}: declare fields as annotations, not __slots__")
        ns["__slots__"] = tuple(own)
        inherited: tuple[str, ...] = ()
        base_defaults: dict = {}
        base_frozen = False
        for base in bases:
            if isinstance(base, _RecordMeta):
                inherited = base._fields
                base_defaults = base._defaults
                base_frozen = base._frozen
                break
        all_fields = inherited + tuple(f for f in own if f not in inherited)
        all_defaults = {**base_defaults, **defaults}
        seen_default = None
        for f in all_fields:
            if f in all_defaults:
                seen_default = f
            elif seen_default is not None:
                raise TypeError(f"{name}: field {f!r} without a default follows {seen_default!r}")
        ns["_fields"] = all_fields
        ns["_defaults"] = all_defaults
        ns["_frozen"] = base_frozen if frozen is None else frozen
        ns["__match_args__"] = all_fields
        if "__init__" not in ns:
            ns["__init__"] = _first_init
        if ns["_frozen"]:
            ns.setdefault("__setattr__", _frozen_setattr)
            ns.setdefault("__delattr__", _frozen_delattr)
            ns.setdefault("__hash__", _hash)
        elif "__eq__" not in ns and "__hash__" not in ns:
            ns["__hash__"] = None  # mutable and compared by value: unhashable, as a dataclass
        return super().__new__(mcs, name, bases, ns, **kw)


def _compile_init(cls) -> object:
    """``__init__(self, a, b=<default>, ...)`` for ``cls``'s fields."""
    names = cls._fields
    env: dict = {"_setattr": object.__setattr__, "_MISSING": _MISSING}
    params, body = [], []
    for f in names:
        default = cls._defaults.get(f, _MISSING)
        if default is _MISSING:
            params.append(f)
            value = f
        elif isinstance(default, Factory):
            env[f"_make_{f}"] = default.make
            params.append(f"{f}=_MISSING")
            value = f"_make_{f}() if {f} is _MISSING else {f}"
        else:
            env[f"_default_{f}"] = default
            params.append(f"{f}=_default_{f}")
            value = f
        body.append(f"    _setattr(self, {f!r}, {value})" if cls._frozen
                    else f"    self.{f} = {value}")
    post = "\n    self.__post_init__()" if hasattr(cls, "__post_init__") else ""
    src = (f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass") + post + "\n")
    exec(compile(src, f"<record {cls.__qualname__}>", "exec"), env)
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def _first_init(self, *args, **kwargs) -> None:
    # Every Record class starts with this initialiser in its own namespace,
    # so a subclass never inherits a parent's compiled one.
    cls = type(self)
    if cls.__dict__.get("__init__") is not _first_init:  # a subclass that defines none
        cls = next(c for c in cls.__mro__ if c.__dict__.get("__init__") is _first_init)
    init = _compile_init(cls)
    type.__setattr__(cls, "__init__", init)
    init(self, *args, **kwargs)


def _frozen_setattr(self, name, value):
    raise AttributeError(f"cannot assign to field {name!r} of frozen {type(self).__name__}")


def _frozen_delattr(self, name):
    raise AttributeError(f"cannot delete field {name!r} of frozen {type(self).__name__}")


def _hash(self) -> int:
    return hash(astuple(self))


class Record(metaclass=_RecordMeta):
    """Base of the value classes; see the module docstring."""

    # _fields, _defaults, _frozen, __slots__, __init__: set by the metaclass

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return astuple(self) == astuple(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}(" + ", ".join(
            f"{f}={getattr(self, f, '<unset>')!r}" for f in self._fields) + ")"

    def __reduce__(self):
        # copy / pickle through the constructor (frozen classes refuse setattr)
        return type(self), astuple(self)


def fields(obj) -> tuple[str, ...]:
    """Field names of a Record class or instance, in declaration order."""
    return obj._fields


def astuple(obj) -> tuple:
    """Field values in declaration order (not recursive)."""
    return tuple(getattr(obj, f) for f in obj._fields)


def replace(obj, **changes):
    """A new instance with ``changes`` applied (``dataclasses.replace``)."""
    unknown = set(changes) - set(obj._fields)
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field(s) {', '.join(sorted(unknown))}")
    return type(obj)(**{f: changes.get(f, getattr(obj, f)) for f in obj._fields})
