import os

import torch

torch.set_num_threads(int(os.environ.get("GENLAB_TEST_THREADS", "1")))
