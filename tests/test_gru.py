import keras
import numpy as np
import pytest

from kboolq.models import gru
from kboolq.models.gru import FastGRU


def _torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


B, T, D, H = 4, 12, 5, 6
X = np.random.default_rng(0).normal(size=(B, T, D)).astype("float32")
MASK = np.ones((B, T), bool)
MASK[0, 3:5] = False  # a gap, like the question padding before the separator
MASK[0, 9:] = False
MASK[1, 6:] = False
MASK[2, :2] = False  # leading padding: outputs stay zero until the first real step
MASK[3, :] = False  # an empty row
PREFIX = np.arange(T) < np.array([[12], [7], [1], [0]])  # trailing padding only: no gathers
DEVICE = "cuda" if keras.backend.backend() == "torch" and _torch_cuda() else "cpu"


def _pair(return_sequences, go_backwards=False):
    reference = keras.layers.GRU(H, return_sequences=return_sequences, go_backwards=go_backwards)
    fast = FastGRU(H, return_sequences=return_sequences, go_backwards=go_backwards)
    reference.build((None, T, D))
    fast.build((None, T, D))
    fast.set_weights(reference.get_weights())
    return reference, fast


@pytest.fixture(params=[True, False], ids=["trimmed", "untrimmed"])
def trim(request, monkeypatch):
    """Both ways FastGRU runs: trimmed to the longest row (read on the host, as on a CPU) and
    over the whole padded length (no host read, as on a GPU)."""
    monkeypatch.setitem(gru.TRIM_ON_HOST, "cpu", request.param)
    monkeypatch.setitem(gru.TRIM_ON_HOST, "cuda", request.param)
    return request.param


@pytest.mark.backend
@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("mask", [None, MASK, PREFIX], ids=["unmasked", "masked", "prefix"])
def test_outputs_equal_keras_gru(return_sequences, mask, go_backwards, trim):
    reference, fast = _pair(return_sequences, go_backwards)
    expected = keras.ops.convert_to_numpy(reference(X, mask=mask))
    actual = keras.ops.convert_to_numpy(fast(X, mask=mask))
    np.testing.assert_allclose(actual, expected, atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="gradients through torch autograd")
@pytest.mark.parametrize("go_backwards", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("mask", [None, MASK, PREFIX], ids=["unmasked", "masked", "prefix"])
def test_gradients_equal_keras_gru(return_sequences, mask, go_backwards, trim):
    import torch

    reference, fast = _pair(return_sequences, go_backwards)
    grads = []
    for layer in (reference, fast):
        inputs = torch.tensor(X, device=DEVICE, requires_grad=True)
        out = layer(inputs, mask=None if mask is None else torch.tensor(mask, device=DEVICE))
        (out**2).sum().backward()
        grads.append([inputs.grad, *(w.value.grad for w in layer.weights)])
    for expected, actual in zip(*grads, strict=True):
        np.testing.assert_allclose(actual.cpu().numpy(), expected.cpu().numpy(), atol=1e-5)


@pytest.mark.backend
def test_bidirectional_wrapper_equals_keras():
    reference = keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=True))
    fast = keras.layers.Bidirectional(FastGRU(H, return_sequences=True))
    reference.build((None, T, D))
    fast.build((None, T, D))
    fast.set_weights(reference.get_weights())
    assert isinstance(fast.backward_layer, FastGRU) and fast.backward_layer.go_backwards
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(fast(X, mask=MASK)),
        keras.ops.convert_to_numpy(reference(X, mask=MASK)),
        atol=1e-5,
    )


@pytest.mark.backend
def test_saves_and_loads_as_fast_gru(tmp_path):
    inputs = keras.Input((T, D))
    model = keras.Model(inputs, FastGRU(H, dropout=0.2)(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.layers[1], FastGRU) and loaded.layers[1].cell.dropout == 0.2
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(X)), keras.ops.convert_to_numpy(model(X)), atol=1e-6
    )


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch dropout path")
def test_training_dropout_drops_whole_features_for_every_step(monkeypatch):
    import kboolq.models.gru as gru

    seen = []
    original = gru._torch_gru
    monkeypatch.setattr(gru, "_torch_gru", lambda *args: seen.append(args[1]) or original(*args))
    layer = FastGRU(H, dropout=0.5, return_sequences=True)
    layer(np.ones((2, T, D), "float32"), training=True)
    dropped = keras.ops.convert_to_numpy(seen[0])
    assert set(np.unique(dropped)) == {0.0, 2.0}
    assert (dropped == dropped[:, :1, :]).all()  # the same features are dropped at every step


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch autograd")
def test_gradients_outside_training_keep_what_the_backward_pass_needs(monkeypatch):
    """cuDNN refuses a backward pass through an RNN run in inference mode; FastGRU asks the
    kernel for training mode whenever a gradient is wanted (found on an H100, checked here)."""
    import torch

    modes = []
    original = torch._VF.gru
    monkeypatch.setattr(torch._VF, "gru", lambda *a: modes.append(a[6]) or original(*a))
    layer = FastGRU(H)
    inputs = torch.tensor(X, device=DEVICE, requires_grad=True)
    layer(inputs, training=False).sum().backward()
    with torch.no_grad():
        layer(inputs, training=False)
    assert modes == [True, False]


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="torch tensors")
@pytest.mark.parametrize("mask", [MASK, PREFIX], ids=["masked", "prefix"])
def test_untrimmed_runs_read_nothing_back_to_the_host(mask, monkeypatch):
    import torch

    from kboolq.hostreads import count_host_reads

    _, fast = _pair(True, go_backwards=True)
    inputs = torch.tensor(X, device=DEVICE, requires_grad=True)
    mask = torch.tensor(mask, device=DEVICE)
    monkeypatch.setitem(gru.TRIM_ON_HOST, DEVICE, True)
    with count_host_reads() as counts:
        fast(inputs, mask=mask)
    assert sum(counts.values()) >= 1  # the trimmed way reads the longest row's length
    monkeypatch.setitem(gru.TRIM_ON_HOST, DEVICE, False)
    with count_host_reads() as counts:
        (fast(inputs, mask=mask) ** 2).sum().backward()
    assert dict(counts) == {}
