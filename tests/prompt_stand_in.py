"""A stand-in for the authors' ``prompts.py``, shared by the system-prompt and protocol tests.

It has the structure of their file (an import, then a module-level dict literal of numbered
triple-quoted strings) and our own placeholder text; the hashes are computed from that text. Their
text never appears in this repository.
"""

import hashlib

from chartrvr_nb.system_prompts import PromptSource

CHAIN = "\nPlaceholder chain-of-thought instructions.\n  Answer inside <answer></answer>.\n"
DIRECT = "\nPlaceholder: answer in one word.\n"


def sha(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_stand_in(path, chain=CHAIN, direct=DIRECT, sentinel=None):
    """A prompts.py shaped like the authors': an import, then the dict literal; optionally a line that
    would create ``sentinel`` if the file were ever executed."""
    trap = f"open({str(sentinel)!r}, 'w').write('executed')\n" if sentinel else ""
    path.write_text(
        f'import os\n{trap}\nSYSTEM_PROMPT_TEMPLATES = {{\n    1: """{direct}""",\n    2: """other""",\n'
        f'    4: """{chain}"""}}\n',
        encoding="utf-8",
    )
    return path


def stand_in_source(url):
    """Where the stand-in is served from, pinned to the stand-in's hashes as the real source is to the authors'."""
    return PromptSource(
        repository="example/chartrl",
        commit="0" * 40,
        path="prompts.py",
        variable="SYSTEM_PROMPT_TEMPLATES",
        sha256={4: sha(CHAIN), 1: sha(DIRECT)},
        url=url,
    )
