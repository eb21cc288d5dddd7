"""Train a policy-gradient agent: ``python train.py [--config configs/NAME.yaml] [--model.lr 0.005] ...``"""

import gc

if __name__ == "__main__":
    # torch, Lightning and W&B create millions of long-lived objects and none of them is garbage:
    # no collection during the imports, and none of them scanned again by later collections or at
    # exit (~1 s each on a small CPU)
    gc.disable()
    from pg_lightning.cli import main

    gc.freeze()
    gc.enable()
    try:
        main()
    finally:
        gc.freeze()
