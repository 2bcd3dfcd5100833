//! The panoptic workflow of U-TAE + PaPs (utae-paps' `train_panoptic.py` / `test_panoptic.py`).
