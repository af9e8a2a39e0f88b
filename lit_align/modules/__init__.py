"""lit_align.modules: one LightningModule per training recipe, thin compositions of models, data and ops."""
from lit_align.modules.base import AlignModule
from lit_align.modules.corgi import CORGIPPOModule, CORGIRLOOModule
from lit_align.modules.discriminator import DiscriminatorModule
from lit_align.modules.dpo import DPOModule
from lit_align.modules.grpo import GRPOModule
from lit_align.modules.online import OnlineRLModule
from lit_align.modules.ppo import PPOModule
from lit_align.modules.reward import RewardModule, ScalarModule
from lit_align.modules.rlgaf import RLGAFModule, RLGAFRLOOModule
from lit_align.modules.rloo import RLOOModule
from lit_align.modules.sft import SFTModule

__all__ = ["AlignModule", "CORGIPPOModule", "CORGIRLOOModule", "DPOModule", "DiscriminatorModule", "GRPOModule",
           "OnlineRLModule", "PPOModule", "RLGAFModule", "RLGAFRLOOModule", "RLOOModule", "RewardModule", "SFTModule",
           "ScalarModule"]
