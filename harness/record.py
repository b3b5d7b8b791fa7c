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

A class's first :data:`COMPILE_AFTER` instances are built by a generic
initialiser (a loop over the fields); then its own ``__init__`` is made
from the field list, once, not when the class is defined: the loop would
make decoding a million headers several times slower, and a compile costs
0.05-0.25 ms (the first one of a process ~1 ms) while ``igvm-harness
measure`` builds a few instances each of a dozen classes.  The compiled
code is made once per shape (which fields are required, defaulted or made
by a factory; frozen or not), with the names put into it.
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


#: Compiled ``__init__`` templates by shape: (field kinds, frozen, __post_init__).
_TEMPLATES: dict = {}
_REQUIRED, _DEFAULT, _FACTORY = 0, 1, 2


def _template(kinds: tuple, frozen: bool, post: bool):
    """The code of an ``__init__`` for fields of these kinds, with placeholder
    names (``_p0``.. for parameters, ``_a0``.. for attributes): compiled once
    per shape, not per class (a compile costs 0.1-0.25 ms; ``measure`` meets
    a dozen classes)."""
    key = (kinds, frozen, post)
    code = _TEMPLATES.get(key)
    if code is None:
        params, body = [], []
        for i, kind in enumerate(kinds):
            p = f"_p{i}"
            if kind == _FACTORY:
                params.append(f"{p}=_MISSING")
                value = f"_make_{i}() if {p} is _MISSING else {p}"
            else:
                params.append(p if kind == _REQUIRED else f"{p}=None")
                value = p
            body.append(f"    _setattr(self, '_a{i}', {value})" if frozen
                        else f"    self._a{i} = {value}")
        tail = "\n    self.__post_init__()" if post else ""
        src = (f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass")
               + tail + "\n")
        env: dict = {"_MISSING": _MISSING}
        exec(compile(src, "<record>", "exec"), env)
        code = _TEMPLATES[key] = env["__init__"].__code__
    return code


def _compile_init(cls) -> object:
    """``__init__(self, a, b=<default>, ...)`` for ``cls``'s fields: the
    template of its shape with the field names put in."""
    import types

    names = cls._fields
    env: dict = {"_setattr": object.__setattr__, "_MISSING": _MISSING}
    kinds, defaults = [], []
    for i, f in enumerate(names):
        default = cls._defaults.get(f, _MISSING)
        if default is _MISSING:
            kinds.append(_REQUIRED)
        elif isinstance(default, Factory):
            kinds.append(_FACTORY)
            env[f"_make_{i}"] = default.make
            defaults.append(_MISSING)
        else:
            kinds.append(_DEFAULT)
            defaults.append(default)
    code = _template(tuple(kinds), bool(cls._frozen), hasattr(cls, "__post_init__"))
    rename = {f"_a{i}": f for i, f in enumerate(names)}
    code = code.replace(
        co_varnames=("self", *names) + code.co_varnames[1 + len(names):],
        co_names=tuple(rename.get(n, n) for n in code.co_names),
        co_consts=tuple(rename.get(c, c) if isinstance(c, str) else c for c in code.co_consts),
        co_filename=f"<record {cls.__qualname__}>", co_qualname=f"{cls.__qualname__}.__init__")
    init = types.FunctionType(code, env, "__init__", tuple(defaults) or None)
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


#: Instances a class builds through the generic initialiser before its own
#: is compiled: a command that builds a few of a class never compiles one
#: (the first compile() of a process costs ~1 ms, each further one ~50 us).
COMPILE_AFTER = 64


def _bind(cls, args: tuple, kwargs: dict) -> list | None:
    """The field values of ``cls(*args, **kwargs)``, or None when the call is
    wrong (the compiled initialiser then raises Python's own TypeError)."""
    names = cls._fields
    if len(args) > len(names):
        return None
    values = list(args)
    defaults = cls._defaults
    for f in names[len(args):]:
        if f in kwargs:
            values.append(kwargs[f])
            continue
        default = defaults.get(f, _MISSING)
        if default is _MISSING:
            return None
        values.append(default.make() if isinstance(default, Factory) else default)
    if len(kwargs) != len(names) - len(args) - sum(1 for f in names[len(args):]
                                                  if f not in kwargs):
        return None  # an unknown keyword, or one given positionally too
    return values


def _first_init(self, *args, **kwargs) -> None:
    # Every Record class starts with this initialiser in its own namespace,
    # so a subclass never inherits a parent's compiled one.
    cls = type(self)
    if cls.__dict__.get("__init__") is not _first_init:  # a subclass that defines none
        cls = next(c for c in cls.__mro__ if c.__dict__.get("__init__") is _first_init)
    count = cls.__dict__.get("_generic_inits", 0)
    if count < COMPILE_AFTER:
        values = _bind(cls, args, kwargs)
        if values is not None:
            type.__setattr__(cls, "_generic_inits", count + 1)
            put = object.__setattr__
            for f, v in zip(cls._fields, values):
                put(self, f, v)
            if hasattr(cls, "__post_init__"):
                self.__post_init__()
            return
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
