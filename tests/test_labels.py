import unicodedata

from brainxai import labels


def test_seventeen_kaggle_classes_and_no_normal_t1c():
    classes = labels.kaggle_classes()
    assert len(classes) == 17 == len(set(classes))
    assert "normal T1C+" not in classes
    assert {c.split()[0] for c in classes} == set(labels.KAGGLE_GROUPS)


def test_real_folder_names_parse_in_nfc_and_nfd():
    for group in labels.KAGGLE_GROUPS:
        for seq in labels.SEQUENCES_2D:
            if group == "normal" and seq == "T1C+":
                continue
            name = labels.kaggle_folder(group, seq)
            for form in ("NFC", "NFD"):
                assert labels.parse_kaggle_folder(unicodedata.normalize(form, name)) == (group, seq)


def test_aliases_and_unknowns():
    assert labels.parse_kaggle_folder("_NORMAL T2") == ("normal", "T2")
    assert labels.parse_kaggle_folder("Glioma T1C") == ("glioma", "T1C+")
    assert labels.parse_kaggle_folder("NORMAL T1C+") is None
    assert labels.parse_kaggle_folder("Pituitary T1") is None
    assert labels.parse_kaggle_folder("Glioma") is None
