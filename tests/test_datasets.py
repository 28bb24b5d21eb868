"""rnnskip.datasets: npz validation, vocabulary, and the real data-set loaders."""
import os

import numpy as np
import pytest

from rnnskip.converter.ir import DenseLayer, EmbeddingInput, FeatureInput, ModelIR, RNNLayer
from rnnskip.datasets import (
    Dataset,
    Vocab,
    infer_lengths,
    load_aeon,
    load_imdb,
    load_npz,
    load_sst2,
    load_stopwords,
    save_npz,
    spread_rows,
)
from rnnskip.errors import RnnskipError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.normpath(os.path.join(REPO, "..", "shared", "data"))
SST2 = os.path.join(SHARED, "sst2")
IMDB = os.path.join(SHARED, "imdb")


def _ir(token=True, vocab=10, features=3, out=1, act="sigmoid", mask_zero=True):
    u = 4
    inp = (EmbeddingInput(np.zeros((vocab, 2), np.float32), mask_zero=mask_zero) if token
           else FeatureInput(features=features))
    d = inp.dim
    rnn = RNNLayer("lstm", u, np.zeros((d, 4 * u)), np.zeros((u, 4 * u)), np.zeros(4 * u))
    return ModelIR(inp, [rnn], [DenseLayer(np.zeros((u, out)), np.zeros(out), act)])


def _write(tmp_path, name="data.npz", **arrays):
    p = tmp_path / name
    np.savez(p, **arrays)
    return str(p)


def _err(path, ir=None):
    with pytest.raises(RnnskipError) as e:
        load_npz(path, ir)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- npz

def test_spread_rows_cover_the_data_evenly():
    """The rows a few-sequence figure is measured on: evenly over the data, first row included, all of them when
    there are no more than asked for."""
    assert spread_rows(60, 4).tolist() == [0, 15, 30, 45]
    assert spread_rows(40, 5).tolist() == [0, 8, 16, 24, 32]
    assert spread_rows(10, 7).tolist() == [0, 1, 2, 4, 5, 7, 8]
    assert spread_rows(3, 16).tolist() == [0, 1, 2] and spread_rows(5, 0).tolist() == []


def test_npz_round_trip_tokens(tmp_path):
    x = np.array([[3, 4, 0, 0], [5, 6, 7, 8]], np.int32)
    ds = Dataset(x=x, y=np.array([0, 1]), lengths=np.array([2, 4], np.int32), texts=["a b", "c d e f"])
    p = str(tmp_path / "d.npz")
    save_npz(p, ds)
    back = load_npz(p, _ir(vocab=9))
    assert back.x.dtype == np.int32 and back.lengths.dtype == np.int32
    np.testing.assert_array_equal(back.x, x)
    np.testing.assert_array_equal(back.y, [0, 1])
    np.testing.assert_array_equal(back.lengths, [2, 4])
    assert back.texts == ["a b", "c d e f"]
    assert os.path.exists(p)  # no ".npz" appended
    save_npz(p, Dataset(x=x, y=None, lengths=ds.lengths))   # unlabelled: no y, nothing pickled
    back = load_npz(p, _ir(vocab=9), labels=False)
    assert back.y is None and np.load(p).files == ["x", "lengths"]


def test_npz_round_trip_features(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 7, 3))  # float64 accepted, stored as float32
    p = _write(tmp_path, x=x, y=np.arange(5) % 3)
    ds = load_npz(p, _ir(token=False, features=3, out=3, act="softmax"))
    assert ds.x.dtype == np.float32 and ds.x.shape == (5, 7, 3)
    np.testing.assert_array_equal(ds.lengths, [7] * 5)
    assert not ds.is_tokens and ds.features == 3


def test_lengths_follow_mask_zero(tmp_path):
    """Under mask_zero trailing id 0 steps are masked: the row ends at its last non-zero id."""
    x = np.array([[3, 0, 4, 0, 0], [1, 1, 1, 1, 1], [2, 0, 0, 0, 0]])  # int64 ok
    ds = load_npz(_write(tmp_path, x=x, y=[1, 0, 1]), _ir(mask_zero=True))
    np.testing.assert_array_equal(ds.lengths, [3, 5, 1])
    np.testing.assert_array_equal(ds.x, x)
    assert ds.padding == "mask_zero: id-0 steps skipped"
    np.testing.assert_array_equal(infer_lengths(x, mask_zero=True), [3, 5, 1])


def test_lengths_without_mask_are_the_whole_row(tmp_path):
    """Without mask_zero Keras embeds id 0 like any id and runs every step (issue 19)."""
    x = np.array([[3, 0, 4, 0, 0], [0, 0, 0, 0, 0], [2, 0, 0, 0, 0]])   # an all-zero row is a real input
    ds = load_npz(_write(tmp_path, x=x, y=[1, 0, 1]), _ir(mask_zero=False))
    np.testing.assert_array_equal(ds.lengths, [5, 5, 5])
    assert ds.padding == "no mask: every step run"
    np.testing.assert_array_equal(infer_lengths(x, mask_zero=False), [5, 5, 5])
    assert load_npz(_write(tmp_path, x=x, y=[1, 0, 1])).padding == "no mask: every step run"   # no model


def test_pre_padding_kept_for_mask_zero(tmp_path):
    """Leading id 0 stays where it is: every stage masks it (rows are not moved, so per-step
    outputs stay aligned with their labels)."""
    x = np.array([[0, 0, 3, 4], [5, 6, 0, 0], [0, 7, 0, 0]])
    ds = load_npz(_write(tmp_path, x=x, y=[1, 0, 1]), _ir(vocab=10, mask_zero=True))
    np.testing.assert_array_equal(ds.x, x)
    np.testing.assert_array_equal(ds.lengths, [4, 2, 2])
    assert ds.notes == []
    # without masking the zeros are real steps
    ds = load_npz(_write(tmp_path, x=x, y=[1, 0, 1]), _ir(vocab=10, mask_zero=False))
    np.testing.assert_array_equal(ds.lengths, [4, 4, 4])


def test_padding_rule_with_lengths_and_masking(tmp_path):
    x = np.array([[3, 0, 4, 0], [5, 6, 0, 0]])
    ds = load_npz(_write(tmp_path, x=x, y=[1, 0], lengths=[2, 4]), _ir(mask_zero=True))
    np.testing.assert_array_equal(ds.lengths, [2, 4])
    assert ds.padding == "lengths from the data file; mask_zero: id-0 steps skipped"
    assert ds.subset([1]).padding == ds.padding
    ds = load_npz(_write(tmp_path, x=x, y=[1, 0], lengths=[2, 4]), _ir(mask_zero=False))
    assert ds.padding == "lengths from the data file"
    f = np.zeros((2, 3, 3), np.float32)
    ir = _ir(token=False)
    ir.input.mask_value = 0.0
    ds = load_npz(_write(tmp_path, x=f, y=[1, 0]), ir)
    np.testing.assert_array_equal(ds.lengths, [3, 3])
    assert ds.padding == "Masking: steps with every feature = 0 skipped"
    assert load_npz(_write(tmp_path, x=f, y=[1, 0]), _ir(token=False)).padding == "no mask: every step run"


def test_missing_file(tmp_path):
    msg = _err(str(tmp_path / "nope.npz"))
    assert "nope.npz does not exist" in msg


def test_not_an_npz(tmp_path):
    p = tmp_path / "data.npz"
    p.write_text("hello")
    assert "is not a readable .npz file" in _err(str(p))
    q = tmp_path / "arr.npy"
    np.save(q, np.zeros(3))
    assert "single .npy array, not an .npz" in _err(str(q))


def test_missing_key(tmp_path):
    p = _write(tmp_path, y=[0, 1])
    assert _err(p) == "'x' is missing from data.npz (it holds y); expected keys x, y and optional lengths"
    p = _write(tmp_path, x=np.ones((2, 3), np.int32))
    assert _err(p) == "'y' is missing from data.npz (it holds x); expected keys x, y and optional lengths"
    p = _write(tmp_path, x_train=np.ones((2, 3), np.int32), y_train=[0, 1])   # the keys there are named
    assert _err(p) == ("'x' is missing from data.npz (it holds x_train, y_train); expected keys x, y and optional "
                       "lengths")


def test_bad_x_shape_dtype(tmp_path):
    msg = _err(_write(tmp_path, x=np.ones((2, 3)), y=[0, 1]))  # 2-D float
    assert msg == ("x in data.npz has shape (2, 3) and dtype float64; "
                   "expected integer token ids [N, T] or float features [N, T, F]; "
                   "if these are token ids, save x.astype('int32')")
    assert "expected integer token ids" in _err(_write(tmp_path, x=np.ones((2, 3, 4), np.int32), y=[0, 1]))
    assert "expected integer token ids" in _err(_write(tmp_path, x=np.ones(3, np.int32), y=[0, 1, 0]))


def test_keys_it_does_not_read_are_named(tmp_path):
    from rnnskip.datasets import load_npz
    x = np.ones((2, 3, 4), np.float32)
    ds = load_npz(_write(tmp_path, x=x, y=[0, 1], mask=np.ones((2, 3)), sample_weight=[1, 2]))
    assert ds.notes == ["warning: data.npz has keys rnnskip does not read (mask, sample_weight); it reads x, y, "
                        "lengths, texts, class_names (the model's own Masking or mask_zero and lengths decide "
                        "which steps run)"]
    assert load_npz(_write(tmp_path, x=x, y=[0, 1], lengths=[3, 2])).notes == []


def test_model_input_kind_mismatch(tmp_path):
    p = _write(tmp_path, x=np.ones((2, 3, 4), np.float32), y=[0, 1])
    assert "takes token ids" in _err(p, _ir(token=True))
    p = _write(tmp_path, x=np.ones((2, 3), np.int32), y=[0, 1])
    assert "takes float features [N, T, 3]" in _err(p, _ir(token=False, features=3))


def test_token_id_out_of_range(tmp_path):
    p = _write(tmp_path, x=np.array([[1, 2, 0], [3, 12, 4]]), y=[0, 1])
    msg = _err(p, _ir(vocab=10))
    assert msg.startswith("token id 12 in x of data.npz (row 1) is out of range for the model's vocabulary of 10 ids")
    p = _write(tmp_path, x=np.array([[1, -2, 0]]), y=[0])
    assert "negative token id -2" in _err(p)


def test_feature_count_mismatch(tmp_path):
    p = _write(tmp_path, x=np.zeros((2, 5, 4), np.float32), y=[0, 1])
    assert _err(p, _ir(token=False, features=3)) == \
        "x in data.npz has 4 features per step but the model expects 3"
    p = _write(tmp_path, x=np.zeros((2, 3, 29), np.float32), y=[0, 1])   # aeon's [N, channels, time]
    assert _err(p, _ir(token=False, features=3)) == (
        "x in data.npz has 29 features per step but the model expects 3; its axis 1 has 3: if x is [rows, features, "
        "steps] (aeon's and PyTorch Conv1d's layout), save x.transpose(0, 2, 1), rows x steps x features")


def test_nan_features(tmp_path):
    x = np.zeros((2, 5, 3), np.float32)
    x[1, 2, 0] = np.nan
    assert "contains NaN or inf values (first at row 1, step 2)" in _err(_write(tmp_path, x=x, y=[0, 1]))
    # NaN only after the rows' lengths (padding that never runs, a review found refused): read as 0, with a note
    ds = load_npz(_write(tmp_path, x=x, y=[0, 1], lengths=[5, 2]))
    assert np.isfinite(ds.x).all() and ds.x[1, 2, 0] == 0 and list(ds.lengths) == [5, 2]
    assert ds.notes == ["note: x in data.npz has NaN or inf only after the rows' lengths (steps that never run); "
                        "rnnskip reads them as 0"]
    assert "(first at row 1, step 2, within its length)" in _err(_write(tmp_path, x=x, y=[0, 1], lengths=[5, 3]))
    x[1, 2, 0] = np.inf
    assert "NaN or inf" in _err(_write(tmp_path, x=x, y=[0, 1]))
    x64 = np.zeros((2, 5, 3))   # finite as float64, inf as the float32 the models compute in
    x64[0, 3, 1] = 1e300
    assert _err(_write(tmp_path, x=x64, y=[0, 1])) == (
        "x in data.npz has values beyond float32's range (first at row 0, step 3: 1e+300); the model computes "
        "in float32: check the data's scale")


def test_y_length_mismatch(tmp_path):
    p = _write(tmp_path, x=np.ones((3, 4), np.int32), y=[0, 1])
    assert _err(p) == "y in data.npz has 2 labels but x has 3 sequences"


def test_label_out_of_range(tmp_path):
    x = np.ones((3, 4), np.int32)
    msg = _err(_write(tmp_path, x=x, y=[0, 2, 1]), _ir(vocab=10, out=1, act="sigmoid"))
    assert msg == ("label 2 in y of data.npz (row 1) is out of range: "
                   "the model has a single sigmoid unit, so labels must be 0 or 1")
    msg = _err(_write(tmp_path, x=x, y=[0, 3, -1]), _ir(vocab=10, out=3, act="softmax"))
    assert "the model has 3 classes, so labels must be 0..2" in msg
    # float labels that are whole numbers are accepted for a classifier
    ds = load_npz(_write(tmp_path, x=x, y=np.array([0.0, 1.0, 2.0])), _ir(vocab=10, out=3, act="softmax"))
    assert ds.y.dtype == np.int64
    assert "non-integer" in _err(_write(tmp_path, x=x, y=[0.5, 1.0, 0.0]), _ir(vocab=10, out=3, act="softmax"))


def test_regression_targets_stay_float(tmp_path):
    p = _write(tmp_path, x=np.zeros((3, 4, 2), np.float32), y=[0.5, 1.5, -2.0])
    ds = load_npz(p, _ir(token=False, features=2, out=1, act="linear"))
    assert ds.y.dtype == np.float32


def test_x_of_the_wrong_dtype_says_what_to_save(tmp_path):
    y = [0, 1]
    assert _err(_write(tmp_path, x=np.ones((2, 4, 3), np.int32), y=y)).endswith(
        "expected integer token ids [N, T] or float features [N, T, F]; if these are features, save "
        "x.astype('float32')")
    assert _err(_write(tmp_path, x=np.ones((2, 4)), y=y)).endswith("if these are token ids, save x.astype('int32')")
    assert _err(_write(tmp_path, x=np.full((2, 4), 1.5), y=y)).endswith(   # astype would truncate them
        "as token ids they would need whole numbers, as features a third axis (F)")


def test_per_step_targets_fit_the_outputs(tmp_path):
    """An output per step: one-hot labels for a softmax classifier, and one real value per step for a 2-output
    regression, are refused when the data are read (an audit found both crashing after the whole build)."""
    x = np.zeros((2, 4, 3), np.float32)

    def per_step(out, act):
        ir = _ir(token=False, out=out, act=act)
        ir.rnn_layers[-1].return_sequences, ir.per_step = True, True
        return ir
    hot = np.eye(3)[np.array([[0, 1, 2, 0], [1, 1, 0, 2]])]
    assert _err(_write(tmp_path, x=x, y=hot), per_step(3, "softmax")) == (
        "y in data.npz is one-hot [2, 4, 3] but the model is a softmax classifier, which takes one class index per "
        "step: save y.argmax(axis=2) as y")
    assert load_npz(_write(tmp_path, x=x, y=hot.argmax(2)), per_step(3, "softmax")).y.shape == (2, 4)
    assert _err(_write(tmp_path, x=x, y=np.full((2, 4), 0.5)), per_step(2, "linear")) == (
        "y in data.npz has real values, one per step, but the model has 2 outputs per step: regression targets are "
        "[N, T, 2] = [2, 4, 2]; class indices are integers")
    assert load_npz(_write(tmp_path, x=x, y=np.full((2, 4, 2), 0.5)), per_step(2, "linear")).y.shape == (2, 4, 2)
    assert "is integer with shape (2, 4, 2)" in _err(_write(tmp_path, x=x, y=np.ones((2, 4, 2), np.int64)),
                                                      per_step(2, "linear"))


def test_one_hot_labels_of_a_logits_classifier_are_refused(tmp_path):
    """A model with K linear outputs (logits) given one-hot y: scored as a K-output regression before (a user check
    found "error float vs label (RMSE) 3.320" printed without a word); multi-hot targets of a sigmoid head stay."""
    x = np.zeros((3, 4, 3), np.float32)
    hot = np.eye(3)[[0, 2, 1]]
    assert _err(_write(tmp_path, x=x, y=hot), _ir(token=False, out=3, act="linear")) == (
        "y in data.npz is one-hot [3, 3]: rnnskip scores a model with 3 linear outputs as a classifier on its logits "
        "given one class index per sequence (else as a 3-output regression): save y.argmax(axis=1) as y")
    assert load_npz(_write(tmp_path, x=x, y=hot), _ir(token=False, out=3, act="sigmoid")).y.shape == (3, 3)
    assert load_npz(_write(tmp_path, x=x, y=hot * 0.5), _ir(token=False, out=3, act="linear")).y.shape == (3, 3)


def test_lengths_out_of_range(tmp_path):
    x = np.ones((2, 4), np.int32)
    assert _err(_write(tmp_path, x=x, y=[0, 1], lengths=[0, 4])) == \
        "lengths in data.npz must be in 1..4 (the padded length T); row 0 has 0"
    assert "row 1 has 5" in _err(_write(tmp_path, x=x, y=[0, 1], lengths=[2, 5]))
    assert "expected [2], one length per sequence" in _err(_write(tmp_path, x=x, y=[0, 1], lengths=[2]))


def test_all_padding_row(tmp_path):
    """A row of padding only loads (Keras predicts it: the mask skips every step, the head reads the initial state;
    it refused the whole file, a review found: 4,085 of SST-2's 67,349 training phrases are empty under a
    Tokenizer(num_words=2000)): its length is the window's, as lengths=T would give, with a note."""
    p = _write(tmp_path, x=np.array([[1, 2, 0], [0, 0, 0], [0, 0, 0]]), y=[0, 1, 1])
    ds = load_npz(p, _ir(mask_zero=True))
    assert list(ds.lengths) == [2, 3, 3]
    assert ds.notes == ["note: 2 rows of x in data.npz are all padding (id 0, which the model's mask_zero Embedding "
                        "skips, e.g. row 1): every step is masked, so the output is the head on the initial state, "
                        "as Keras computes it"]


# ---------------------------------------------------------------- vocab

TEXTS = ["the cat sat", "the dog sat", "a cat", "the end", "zebra"]


def test_vocab_order_and_ids():
    v = Vocab.build(TEXTS, max_words=4)
    # the(3) cat(2) sat(2) then a/dog/end/zebra(1) alphabetical -> a
    assert v.words == ["<pad>", "<oov>", "the", "cat", "sat", "a"]
    assert v.size == 6
    np.testing.assert_array_equal(v.to_ids("The zebra CAT"), [2, 1, 3])
    np.testing.assert_array_equal(v.to_ids("the cat sat a", max_len=2), [2, 3])
    np.testing.assert_array_equal(v.to_ids("cat", max_len=3, pad=True), [3, 0, 0])
    x, lengths = v.encode(["the cat", "", "a a a a a"], max_len=3)
    np.testing.assert_array_equal(x, [[2, 3, 0], [1, 0, 0], [5, 5, 5]])
    np.testing.assert_array_equal(lengths, [2, 1, 3])


def test_vocab_deterministic_and_save_load(tmp_path):
    a = Vocab.build(TEXTS, max_words=10)
    b = Vocab.build(list(reversed(TEXTS)), max_words=10)
    assert a == b
    p = str(tmp_path / "model.vocab.json")
    a.save(p)
    import json
    d = json.load(open(p))
    assert d["format"] == "rnnskip-vocab-1" and d["lower"] is True and d["tokenizer"] == "whitespace"
    assert Vocab.load(p) == a


def test_vocab_load_errors(tmp_path):
    with pytest.raises(RnnskipError, match="does not exist"):
        Vocab.load(str(tmp_path / "none.json"))
    p = tmp_path / "v.json"
    p.write_text('{"format": "other"}')
    with pytest.raises(RnnskipError, match="not an rnnskip vocabulary"):
        Vocab.load(str(p))


def test_imdb_tokenizer():
    v = Vocab(["great", "movie", "!", "don't", "."], tokenizer="words-punct")
    assert v.tokens("Great movie!<br /><br />Don't miss.") == ["great", "movie", "!", "don't", "miss", "."]


def test_stopwords():
    sw = load_stopwords()
    assert 120 <= len(sw) <= 200
    assert {"the", "a", "of", "and"} <= sw
    assert not ({"not", "no", "n't", "never", "but"} & sw)


# ---------------------------------------------------------------- real data

needs_sst2 = pytest.mark.skipif(not os.path.isdir(SST2),
                                reason=f"SST-2 data not found at {SST2} (../shared/data absent)")
needs_imdb = pytest.mark.skipif(not os.path.isdir(IMDB),
                                reason=f"IMDB data not found at {IMDB} (../shared/data absent)")


@needs_sst2
def test_sst2_loader():
    tr, vocab = load_sst2(SST2, "train", max_words=8000, max_len=50)
    dv, _ = load_sst2(SHARED, "dev", vocab=vocab, max_len=50)  # parent folder works too
    assert len(tr) == 67349 and len(dv) == 872
    assert set(np.unique(tr.y)) == {0, 1} and set(np.unique(dv.y)) == {0, 1}
    assert vocab.size == 8002 and tr.x.shape == (67349, 50) and tr.x.dtype == np.int32
    assert tr.lengths.min() >= 1 and tr.lengths.max() <= 50
    np.testing.assert_array_equal(infer_lengths(dv.x, mask_zero=True), dv.lengths)
    assert len(dv.texts) == 872


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(RnnskipError, match=r"expected train\.tsv, dev\.tsv"):
        load_sst2(str(tmp_path), "train")
    with pytest.raises(RnnskipError, match=r"IMDB folder .* does not exist; expected a folder with train\.tsv\.gz"):
        load_imdb(str(tmp_path / "missing"), "test")


@needs_imdb
def test_imdb_loader():
    vocab = Vocab.build(["the movie was good", "bad film"], tokenizer="words-punct")
    te, _ = load_imdb(IMDB, "test", vocab=vocab, max_len=100)
    assert len(te) == 25000
    assert set(np.unique(te.y)) == {0, 1}
    assert te.x.shape == (25000, 100)


def test_aeon_japanese_vowels():
    pytest.importorskip("aeon")
    tr, names = load_aeon("JapaneseVowels", "train")
    te, names2 = load_aeon("JapaneseVowels", "test")
    assert names == names2 and len(names) == 9
    assert tr.x.shape[0] == 270 and te.x.shape[0] == 370
    assert tr.x.shape[2] == 12 and tr.x.shape[1] == te.x.shape[1] == 29
    assert tr.x.dtype == np.float32
    assert set(np.unique(tr.y)) == set(range(9))
    assert tr.lengths.min() >= 7 and tr.lengths.max() <= 29
    i = int(np.argmin(tr.lengths))
    assert np.all(tr.x[i, tr.lengths[i]:] == 0)
    with pytest.raises(RnnskipError, match="not a classification set bundled with aeon"):
        load_aeon("NoSuchSet", "train")


def test_mask_check_compares_in_float32_as_keras(tmp_path):
    """float64 data padded with a mask value float32 cannot hold exactly (0.1): Keras casts to float32
    and masks those steps, so rows padded at the end with lengths get no warning."""
    from rnnskip.datasets import load_npz
    ir = _ir(token=False, features=2)
    ir.input.mask_value = 0.1
    x = np.full((2, 4, 2), 0.1, np.float64)
    x[0, :2], x[1, :3] = 1.0, -1.0
    p = _write(tmp_path, x=x, y=[0, 1], lengths=[2, 3])
    assert load_npz(p, ir).notes == []
    x[0, 3] = 5.0          # a real step after row 0's length: now the lengths contradict the mask
    assert "contradict the model's Masking layer" in load_npz(_write(tmp_path, x=x, y=[0, 1], lengths=[2, 3]),
                                                                ir).notes[0]


def test_time_major_x_gets_a_hint(tmp_path):
    """x given [T, N, F] with N labels: the label count error says what to do if x is time-major (only if: a
    y cut short to T by chance gets the same count)."""
    from rnnskip.datasets import load_npz
    from rnnskip.errors import RnnskipError
    p = tmp_path / "tm.npz"
    np.savez(p, x=np.zeros((15, 8, 3), np.float32), y=np.zeros(8, np.int64))
    with pytest.raises(RnnskipError) as e:
        load_npz(str(p))
    assert str(e.value) == ("y in tm.npz has 8 labels but x has 15 sequences (as many as x has steps: if x is "
                            "time-major, [steps, sequences, ...], save x.swapaxes(0, 1); --data holds x batch-major)")
