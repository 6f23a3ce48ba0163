"""Label vocabulary shared by the generator, ingestion and every later stage.

Two tasks live in this project:

* the 2D task of paper 000 (TumorXAI): the public 17-class Kaggle brain-MRI set,
  one class per ``<tumour group> <sequence>`` folder: 6 groups x (T1, T1C+, T2)
  minus ``NORMAL T1C+`` = 17 classes;
* the 3D task of paper 003 (Virtual Biopsy): a 4-class diagnosis of the T1-CE
  volume (glioma, PCNSL, germinoma, other).

Canonical names are lower-case ASCII; the Kaggle folder names (Portuguese, with
accents and parentheses) are kept as they appear in the public set.
"""

from __future__ import annotations

import re
import unicodedata

#: Lesion phenotypes the synthetic generator can draw (``normal`` = no lesion).
PHENOTYPES: tuple[str, ...] = (
    "glioma",
    "meningioma",
    "schwannoma",
    "neurocytoma",
    "pcnsl",
    "germinoma",
    "other",
    "normal",
)

#: MR sequences of the 2D Kaggle-layout set, in folder-suffix spelling.
SEQUENCES_2D: tuple[str, ...] = ("T1", "T1C+", "T2")
#: MR sequences of the 3D cohort (BIDS suffix in :data:`BIDS_SUFFIX`).
SEQUENCES_3D: tuple[str, ...] = ("T1", "T1C+", "T2", "FLAIR")

#: BIDS file-name tail per sequence (``sub-XXX_<tail>.nii.gz``).
BIDS_SUFFIX: dict[str, str] = {
    "T1": "T1w",
    "T1C+": "ce-gd_T1w",
    "T2": "T2w",
    "FLAIR": "FLAIR",
}

#: Tumour groups of the 17-class Kaggle set and their folder prefix in the public set.
KAGGLE_GROUP_FOLDERS: dict[str, str] = {
    "glioma": "Glioma (Astrocitoma, Ganglioglioma, Glioblastoma, Oligodendroglioma, Ependimoma)",
    "meningioma": "Meningioma (de Baixo Grau, Atípico, Anaplásico, Transicional)",
    "neurocytoma": "Neurocitoma (Central - Intraventricular, Extraventricular)",
    "normal": "NORMAL",
    "other": "Outros Tipos de Lesões (Abscessos, Cistos, Encefalopatias Diversas)",
    "schwannoma": "Schwannoma (Acustico, Vestibular - Trigeminal)",
}
KAGGLE_GROUPS: tuple[str, ...] = tuple(KAGGLE_GROUP_FOLDERS)

#: Short aliases accepted for a group (first word of the folder name, lower-case,
#: accents stripped; the public set spells NORMAL as ``_NORMAL`` in some copies).
_GROUP_ALIASES: dict[str, str] = {
    "glioma": "glioma",
    "meningioma": "meningioma",
    "neurocitoma": "neurocytoma",
    "neurocytoma": "neurocytoma",
    "normal": "normal",
    "_normal": "normal",
    "outros": "other",
    "other": "other",
    "schwannoma": "schwannoma",
}

#: Diagnoses of the 3D cohort (paper 003, ICT-MRI: glioma, PCNSL, germinoma, other).
DIAGNOSES_3D: tuple[str, ...] = ("glioma", "pcnsl", "germinoma", "other")


def kaggle_classes() -> list[str]:
    """The 17 class labels ``"<group> <sequence>"`` in a fixed order."""
    return [
        f"{g} {s}"
        for g in KAGGLE_GROUPS
        for s in SEQUENCES_2D
        if not (g == "normal" and s == "T1C+")
    ]


def kaggle_folder(group: str, sequence: str) -> str:
    """Folder name of the public set for a canonical group and sequence."""
    if group not in KAGGLE_GROUP_FOLDERS:
        raise KeyError(f"unknown tumour group {group!r}")
    if sequence not in SEQUENCES_2D or (group == "normal" and sequence == "T1C+"):
        raise KeyError(f"no Kaggle class for {group!r} {sequence!r}")
    return f"{KAGGLE_GROUP_FOLDERS[group]} {sequence}"


_FOLDER_RE = re.compile(r"^(?P<group>.+?)\s+(?P<seq>T1C\+|T1C|T1|T2)\s*$", re.IGNORECASE)


def _strip_accents(text: str) -> str:
    nfkd = unicodedata.normalize("NFKD", text)
    return "".join(c for c in nfkd if not unicodedata.combining(c))


def parse_kaggle_folder(name: str) -> tuple[str, str] | None:
    """Map a class folder name to ``(group, sequence)``, or ``None`` if unknown.

    Tolerates NFC/NFD spellings, the long parenthesised names of the public set,
    ``_NORMAL`` and a missing ``+`` (``T1C``). The 17th-class rule holds: there is
    no ``normal T1C+``.
    """
    text = unicodedata.normalize("NFC", name).strip()
    m = _FOLDER_RE.match(text)
    if not m:
        return None
    seq = m.group("seq").upper()
    seq = "T1C+" if seq.startswith("T1C") else seq
    first = _strip_accents(m.group("group")).split("(")[0].strip().split()
    if not first:
        return None
    group = _GROUP_ALIASES.get(first[0].lower())
    if group is None or (group == "normal" and seq == "T1C+"):
        return None
    return group, seq


#: Tissue segmentation codes (``*_dseg.nii.gz`` of the synthetic cohort's ground truth).
#: ``skull`` includes the diploe; ``wm`` includes oedematous WM; ``lesion`` = tumour core.
TISSUE_LABELS: dict[int, str] = {
    0: "background",
    1: "csf",
    2: "gm",
    3: "wm",
    4: "skull",
    5: "scalp",
    6: "lesion",
}

#: Lesion sub-region codes (``*_label-lesion_dseg.nii.gz``; 0 = outside the lesion).
#: The binary lesion mask is the tumour core: codes 1-3 (oedema excluded).
LESION_REGIONS: dict[int, str] = {
    1: "enhancing",
    2: "necrosis",  # necrosis or fluid (cyst, abscess cavity, "bubbles")
    3: "solid",  # non-enhancing solid tumour
    4: "oedema",
}
