"""Human-readable object names for the questions: one name table per BOP dataset.

Tables ship as JSON in ``bopask_gen/data/names/{ycbv,hope,handal,lm}.json``::

    {"dataset": "ycbv", "source": "...", "verified": true,
     "objects": {"1": {"id_name": "002_master_chef_can",
                       "names": ["master chef can", "can of coffee"]}, ...}}

The first name of an object is its canonical name; the others are aliases the question
templates pick from for variety. A user table (``--objects my_names.json``) may use that
layout or the short one ``{"1": "mug", "2": ["bowl", "red bowl"]}``.
"""

from dataclasses import dataclass
import json
from pathlib import Path

NAMES_DIR = Path(__file__).resolve().parents[1] / 'data' / 'names'
TABLE_KEYS = ('ycbv', 'hope', 'handal', 'lm')
# Folder-name prefixes of BOP datasets that share a table (lmo = LM-Occlusion, hopev2).
_PREFIXES = (('ycbv', 'ycbv'), ('ycb', 'ycbv'), ('hope', 'hope'), ('handal', 'handal'),
             ('lmo', 'lm'), ('lm', 'lm'), ('linemod', 'lm'))


class NameTableError(ValueError):
    """A name table cannot be found, read or inferred; the message says which and why."""


@dataclass(frozen=True)
class NameTable:
    """Names per BOP obj_id; ``names[obj_id]`` is a non-empty tuple, canonical name first."""

    key: str
    names: dict
    source: str = ''
    verified: bool = True

    def has(self, obj_id):
        """True when the table names this object."""
        return int(obj_id) in self.names

    def canonical(self, obj_id):
        """The canonical name of an object; NameTableError when the table lacks it."""
        return self.aliases(obj_id)[0]

    def aliases(self, obj_id):
        """All names of an object, canonical first."""
        try:
            return self.names[int(obj_id)]
        except KeyError:
            raise NameTableError(
                f'object id {obj_id} is not in the name table {self.key!r} '
                f'(it names ids {sorted(self.names)[:5]}...); pass --objects names.json'
            ) from None

    def pick(self, obj_id, rng=None):
        """One name of an object: the canonical one without ``rng``, else a random alias."""
        names = self.aliases(obj_id)
        if rng is None or len(names) == 1:
            return names[0]
        return names[int(rng.integers(len(names)))]


def infer_table_key(dataset_dir):
    """Return the table key for a dataset folder from its name (``ycbv_test`` -> ``ycbv``)."""
    name = Path(dataset_dir).resolve().name.lower()
    for prefix, key in _PREFIXES:
        if name.startswith(prefix):
            return key
    raise NameTableError(
        f'cannot infer the object name table from the dataset folder name {name!r}: '
        f'pass --objects with one of {", ".join(TABLE_KEYS)} or a names.json file'
    )


def _parse_entry(path, key, value):
    if isinstance(value, dict):
        value = value.get('names')
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or \
            not all(isinstance(n, str) and n.strip() for n in value):
        raise NameTableError(
            f'{path}: object {key!r} needs a name or a non-empty list of names, got {value!r}'
        )
    return tuple(n.strip() for n in value)


def read_table(path, key=None):
    """Read a name table JSON file (full or short layout); errors name the file and key."""
    path = Path(path)
    if not path.is_file():
        raise NameTableError(f'{path}: name table file not found')
    try:
        with open(path) as f:
            raw = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NameTableError(f'{path}: not valid JSON ({exc})') from exc
    if not isinstance(raw, dict):
        raise NameTableError(f'{path}: expected a JSON object mapping obj_id to names')
    entries = raw['objects'] if isinstance(raw.get('objects'), dict) else raw
    names = {}
    for obj_key, value in entries.items():
        try:
            obj_id = int(obj_key)
        except ValueError:
            raise NameTableError(f'{path}: key {obj_key!r} is not an integer obj_id') from None
        names[obj_id] = _parse_entry(path, obj_key, value)
    if not names:
        raise NameTableError(f'{path}: the name table is empty')
    return NameTable(
        key=key or raw.get('dataset') or path.stem, names=names,
        source=str(raw.get('source', path)), verified=bool(raw.get('verified', True)),
    )


def load_name_table(spec=None, dataset_dir=None):
    """Return the NameTable for ``--objects``: a table key, a JSON path, or None (infer).

    With ``spec`` None the key is inferred from ``dataset_dir``'s folder name.
    """
    if spec is None:
        if dataset_dir is None:
            raise NameTableError('no --objects given and no dataset folder to infer it from')
        spec = infer_table_key(dataset_dir)
    spec = str(spec)
    if spec.lower() in TABLE_KEYS:
        return read_table(NAMES_DIR / f'{spec.lower()}.json', key=spec.lower())
    if spec.lower().endswith('.json') or Path(spec).exists():
        return read_table(spec)
    raise NameTableError(
        f'unknown object name table {spec!r}: use one of {", ".join(TABLE_KEYS)} '
        'or the path of a names.json file'
    )
