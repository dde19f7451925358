"""pgmodels-edge: run a pgmodels model on a device, with no database.

    from pgmodels_edge import EdgeModel, Device
    model = EdgeModel.load("bundle-dir", public_key="…64 hex digits…", project="churn")
    model.predict({"age": 41, "plan": "pro"})

    device = Device("/var/lib/app/model", public_key=KEY,
                    url="https://models.example/v2/models/churn/bundle", token=TOKEN)
    device.sync()          # 'updated', 'unchanged', 'offline', 'refused' or 'error'; device.model serves
                           # (the project is the URL's "churn", or Device(..., project=...))

Depends on numpy and onnxruntime only.
"""

from .errors import BundleError, EdgeError
from .model import EdgeModel
from .sync import Device, SyncResult, sync

__version__ = "0.2.0"
__all__ = ["BundleError", "Device", "EdgeError", "EdgeModel", "SyncResult", "sync"]
