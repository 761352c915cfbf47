"""scripts/prepare_iwslt14.sh on a tiny IWSLT14-shaped archive written here: filter, tokenize (sacremoses),
clean, lowercase, split, learn/apply BPE (subword-nmt), binarize (fairseq-preprocess --joined-dictionary)."""

from __future__ import annotations

from tasks.translation import prepare

DE = ["Das ist ein Haus.", "Wir haben ein paar Geschichten, die man je gesehen hat.", "Ich denke, das ist gut!",
      "Vielen Dank.", "Er sagte: \"Hallo\" und ging.", "Die Wahrheit ist, dass die Titanic sinkt.",
      "Es gibt 3,5 Millionen Menschen.", "Ein sehr langer Satz mit vielen Woertern und noch mehr Woertern hier."]
EN = ["This is a house.", "We have a few stories that one has ever seen.", "I think that's good!",
      "Thank you.", "He said: \"Hello\" and left.", "The truth is that the Titanic sinks.",
      "There are 3.5 million people.", "Short."]


def _orig(root):
    d = root / "de-en"
    d.mkdir(parents=True)
    header = ["<url>http://www.ted.com/talks/x.html</url>", "<keywords>talks, x</keywords>", "<talkid>1</talkid>",
              "<title>Ein Titel</title>", "<description>Eine Beschreibung.</description>"]
    header_en = ["<url>http://www.ted.com/talks/x.html</url>", "<keywords>talks, x</keywords>",
                 "<talkid>1</talkid>", "<title>A title</title>", "<description>A description.</description>"]
    lines_de = header + DE * 6  # 48 + 5 lines: valid takes every 23rd of the cleaned ones
    lines_en = header_en + EN * 6
    (d / "train.tags.de-en.de").write_text("\n".join(lines_de) + "\n")
    (d / "train.tags.de-en.en").write_text("\n".join(lines_en) + "\n")
    for name in prepare.IWSLT_TEST_SETS:
        for lang, text in (("de", "Das ist ein Test’s."), ("en", "This is a test’s.")):
            (d / f"{name}.de-en.{lang}.xml").write_text(
                f'<refset>\n<doc docid="1">\n<seg id="1"> {text} </seg>\n<seg id="2">Danke.</seg>\n</doc>\n</refset>\n')
    return root


def test_text_steps_match_fairseqs_moses_pipeline():
    assert prepare.iwslt_train_filter(["<url>x</url>", "<title>Hi</title>", "a"]) == ["Hi", "a"]
    assert prepare.tokenize(['Er sagte: "Hallo."'], "de") == ["Er sagte : &quot; Hallo . &quot;"]
    # tokenizer.perl splits the period off a line's last word even for non-breaking prefixes ("Art.")
    assert prepare.tokenize(["von der nachhaltigen Art."], "de") == ["von der nachhaltigen Art ."]
    assert prepare.tokenize(["well-known"], "en", aggressive=True) == ["well @-@ known"]
    s, t = prepare.clean_corpus(["a  b", "a", "", "a b c d"], ["x y", "x y z w", "x", "x"], ratio=1.5, min_len=1,
                                max_len=3)
    assert (s, t) == (["a b"], ["x y"])  # whitespace squeezed; ratio, empty and length filters
    rest, every = prepare.split_every([str(i) for i in range(1, 48)], 23)
    assert every == ["23", "46"] and len(rest) == 45
    assert prepare.xml_segments(['<seg id="7"> It’s </seg>', "<doc>"]) == ["It's"]


def test_prepare_iwslt14_script_end_to_end(tmp_path, run_cmd, repo_root):
    orig = _orig(tmp_path / "orig")
    out = tmp_path / "iwslt14"
    run_cmd(["bash", str(repo_root / "scripts/prepare_iwslt14.sh"), str(out)],
            env={"IWSLT14_ORIG": str(orig), "BPE_MERGES": "60", "WORKERS": "1"})
    tok = out / "tokenized"
    train_de = (tok / "train.de").read_text().splitlines()
    valid_de = (tok / "valid.de").read_text().splitlines()
    test_en = (tok / "test.en").read_text().splitlines()
    # 5 tag lines: 3 dropped, title/description text kept; the "Short." pair fails the 1.5 length ratio
    assert len(train_de) + len(valid_de) == 2 + 7 * 6 and len(valid_de) == 44 // 23
    assert all(x == x.lower() for x in train_de + test_en)
    assert any("@@" in x for x in train_de)  # BPE applied
    codes = (tok / "code").read_text().splitlines()
    assert codes[0].startswith("#version") and len(codes) == 61
    assert len(test_en) == 2 * len(prepare.IWSLT_TEST_SETS)
    assert (out / "raw" / "test.en").read_text().splitlines()[0] == "This is a test's."
    binned = out / "data-bin"
    assert (binned / "dict.de.txt").read_text() == (binned / "dict.en.txt").read_text()  # joined dictionary
    for split in ("train", "valid", "test"):
        assert (binned / f"{split}.de-en.de.bin").stat().st_size > 0
