"""Train a policy-gradient agent: ``python train.py [--config configs/NAME.yaml] [--model.lr 0.005] ...``"""

from pg_lightning.cli import main

if __name__ == "__main__":
    main()
