"""App settings leave the propagation protocol to the model unless the user sets a value."""
from PySide6.QtCore import QSettings

from annotator.propagation import ModelProvider
from annotator.settings import AppSettings
from engine.models import random_encoder
from engine.propagate import Propagator


def provider(tmp_path, **values):
    store = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    settings = AppSettings(store)
    for k, v in values.items():
        settings.set(k, v)
    return ModelProvider(settings)


def test_defaults_follow_the_models_protocol(tmp_path):
    params = provider(tmp_path).params("cpu")
    assert (params.topk, params.context, params.radius, params.temperature) == (None, None, None, None)
    crw = Propagator(random_encoder("crw-r18-s8"), params, device="cpu").params
    # CPU default scale 0.5: CRW's radius 12 (defined at scale 1) searches 6 cells of the half-size grid
    assert params.scale == 0.5
    assert (crw.protocol, crw.topk, crw.context, crw.radius, crw.temperature) == ("crw", 10, 20, 6.0, 0.05)
    mast = Propagator(random_encoder("mast-r18-s4"), params, device="cpu").params
    assert mast.protocol == "mast" and mast.topk != 10


def test_user_values_override_the_protocol(tmp_path):
    params = provider(tmp_path, **{"propagation/topk": 5, "propagation/context": 0,
                                   "propagation/radius": 8.0, "propagation/temperature": 0.1}).params("cpu")
    assert (params.topk, params.context, params.radius, params.temperature) == (5, 0, 8.0, 0.1)
