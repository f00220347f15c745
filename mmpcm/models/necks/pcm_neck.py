"""PCM neck: salient concept retrieval and patch-wise cross-modal mix-up."""
import math
from typing import List, NamedTuple, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmpcm.models.utils.concepts import ConceptVocabulary
from mmpcm.models.utils.errors import CheckpointMismatchError
from mmpcm.registry import MODELS

VISUAL_TOKEN, TEXTUAL_TOKEN = 0, 1


def fp32_region(device: torch.device) -> torch.autocast:
    """A region where autocast is off, so matmuls of fp32 inputs stay fp32.

    Under bf16 autocast, concept retrieval and patch selection would run in
    bf16 even on fp32 inputs and pick other concepts and patches.
    """
    return torch.autocast(device_type=torch.device(device).type,
                          enabled=False)


class SalientConcepts(NamedTuple):
    """Top-K concepts retrieved for each image.

    Attributes:
        indices (torch.Tensor): ``(B, K)`` concept ids.
        probs (torch.Tensor): ``(B, K)`` retrieval probabilities.
        embeds (torch.Tensor): ``(B, K, D)`` normalised concept embeddings.
        mask (torch.Tensor): ``(B, K)`` bool, True where ``probs`` is above
            the threshold.
    """
    indices: torch.Tensor
    probs: torch.Tensor
    embeds: torch.Tensor
    mask: torch.Tensor


class PCMTokens(NamedTuple):
    """The neck's output, the visual-semantic encoder's input.

    Attributes:
        tokens (torch.Tensor): ``(B, T, d)`` embedded tokens, the global token
            first.
        padding_mask (torch.Tensor): ``(B, T)`` bool, True for tokens the
            encoder must ignore.
        selected (torch.Tensor): ``(B, N)`` bool, the patches chosen by the
            selection (replaced at training, appended at inference).
    """
    tokens: torch.Tensor
    padding_mask: torch.Tensor
    selected: torch.Tensor


class ConceptPicture(NamedTuple):
    """What PCM sees in a batch of images: the retrieved concepts and the
    patches it selects, each with the concept it takes (inference view).

    Attributes:
        concept_ids (torch.Tensor): ``(B, K)`` concept table rows, best
            first.
        concept_probs (torch.Tensor): ``(B, K)`` retrieval probabilities.
        concept_kept (torch.Tensor): ``(B, K)`` bool, above the threshold
            (a masked concept adds nothing to the textual patches).
        selected (torch.Tensor): ``(B, N)`` bool, the selected patches
            (row-major over the patch grid, like the ViT's tokens).
        patch_concept (torch.Tensor): ``(B, N)`` int64, for every patch the
            position in ``concept_ids`` of the kept concept it is most
            similar to (its largest weight in the textual patch).
        patch_similarity (torch.Tensor): ``(B, N)`` cosine similarity of
            each patch to that concept in CLIP's joint space.
    """
    concept_ids: torch.Tensor
    concept_probs: torch.Tensor
    concept_kept: torch.Tensor
    selected: torch.Tensor
    patch_concept: torch.Tensor
    patch_similarity: torch.Tensor


@MODELS.register_module()
class PCMNeck(BaseModule):
    """Patch-wise cross-modal mix-up (PCM) and token embedding.

    Training: each selected patch's visual token is replaced by its textual
    patch, a mixture of the image's salient concepts. Inference: nothing is
    replaced; the selected patches' textual tokens are appended and every
    other appended slot is masked out. See METHOD.md, steps 3-5; release
    file ``xmodaler/modeling/embedding/visual_grid_cliptag_lr_embed.py``.

    As the release computes it: retrieval normalises the global embedding and
    the concept table itself; concepts at or below ``concept_threshold`` are
    zeroed before the textual patches are built; retrieval and selection run
    in fp32 with autocast off; the training noise is added to the normalised
    global embedding, which is normalised again; positional embeddings start
    from a truncated normal of std 0.02.

    Args:
        concepts (str | ConceptVocabulary, optional): Concept vocabulary file
            (or object). None builds an empty table that a checkpoint fills.
            Defaults to None.
        clip_model (str, optional): open_clip model name the run uses; the
            concept file must have been made with it. Defaults to None.
        num_patches (int): Patch tokens per image. Defaults to 49.
        patch_dim (int): Width of CLIP patch tokens. Defaults to 768.
        embed_dim (int): CLIP joint-space width. Defaults to 512.
        model_dim (int): Width of the captioner. Defaults to 512.
        top_k (int): Salient concepts kept per image (K). Defaults to 5.
        num_selected (int): Patch-concept entries selected (M). Defaults to 5.
        tau (float): Softmax temperature. Defaults to 0.01.
        concept_words (list[str], optional): The concept table's words when
            ``concepts`` is None (a model whose table comes from a
            checkpoint; loaders that know the words pass them). Not part of
            the state. Defaults to None.
        concept_threshold (float): Concepts with retrieval probability at or
            below it are masked out. Defaults to 0.0.
        noise_var (float): Variance of the Gaussian noise added to the
            normalised global feature at training. Defaults to 0.016.
        mixup (bool): Use PCM (replace at training, append at inference).
            False gives the plain visual baseline. Defaults to True.
        dropout (float): Dropout after the embedding. Defaults to 0.5.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 concepts: Optional[Union[str, ConceptVocabulary]] = None,
                 clip_model: Optional[str] = None,
                 num_patches: int = 49,
                 patch_dim: int = 768,
                 embed_dim: int = 512,
                 model_dim: int = 512,
                 top_k: int = 5,
                 num_selected: int = 5,
                 tau: float = 0.01,
                 concept_words: Optional[List[str]] = None,
                 concept_threshold: float = 0.0,
                 noise_var: float = 0.016,
                 mixup: bool = True,
                 dropout: float = 0.5,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if isinstance(concepts, str):
            concepts = ConceptVocabulary.load(concepts, clip_model, embed_dim)
        table = (concepts.embeddings if concepts is not None else
                 torch.zeros(0, embed_dim))
        if mixup and concepts is not None and len(concepts.words) < top_k:
            raise ValueError(f'top_k={top_k} exceeds the {len(concepts.words)}'
                             ' concepts of the vocabulary.')
        self.register_buffer('concept_embeds', table.float())  # (C, D)
        #: The concept words: the concept file's, else ``concept_words``
        #: (None when unknown: a checkpoint carries only the table).
        self.concept_words: Optional[List[str]] = (
            list(concepts.words) if concepts is not None else
            list(concept_words) if concept_words is not None else None)
        self.num_patches = num_patches
        self.patch_dim = patch_dim
        self.embed_dim = embed_dim
        self.top_k = top_k
        self.num_selected = num_selected
        self.tau = tau
        self.concept_threshold = concept_threshold
        self.noise_std = math.sqrt(noise_var)
        self.mixup = mixup

        self.visual_proj = nn.Linear(patch_dim, model_dim)
        self.textual_proj = nn.Linear(embed_dim, model_dim)
        self.global_proj = nn.Linear(embed_dim, model_dim)
        self.pos_embed = nn.Embedding(1 + num_patches, model_dim)
        nn.init.trunc_normal_(self.pos_embed.weight, std=0.02, a=-2.0, b=2.0)
        self.type_embed = nn.Embedding(2, model_dim)
        self.norm = nn.LayerNorm(model_dim)
        self.dropout = nn.Dropout(dropout)

    # ------------------------------------------------------------ checkpoints
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + 'concept_embeds'
        if key in state_dict:
            incoming = state_dict[key]
            if self.concept_embeds.numel() == 0:
                # Built without a concept file: adopt the checkpoint's table.
                self.concept_embeds = torch.empty_like(
                    incoming, device=self.concept_embeds.device)
            elif incoming.shape != self.concept_embeds.shape:
                raise CheckpointMismatchError(
                    f'The checkpoint holds {incoming.shape[0]} concepts of '
                    f'width {incoming.shape[1]}, the model\'s concept file '
                    f'{tuple(self.concept_embeds.shape)}: they were made from '
                    'different concept vocabularies.')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------ PCM steps
    def retrieve_concepts(self, global_embed: torch.Tensor) -> SalientConcepts:
        """Salient concept retrieval (METHOD.md step 3).

        Both the image embedding and the concept table are L2-normalised
        here, in fp32, so callers may pass raw embeddings.

        Args:
            global_embed (torch.Tensor): ``(B, D)`` image embedding.

        Returns:
            SalientConcepts: The top-K concepts of each image; the embeddings
            of masked concepts are zero.
        """
        if self.concept_embeds.shape[0] < self.top_k:
            raise RuntimeError(
                f'PCMNeck has {self.concept_embeds.shape[0]} concepts, fewer '
                f'than top_k={self.top_k}: give it a concept file.')
        with fp32_region(global_embed.device):
            g = F.normalize(global_embed.float(), dim=-1)  # (B, D)
            table = F.normalize(self.concept_embeds.float(), dim=-1)  # (C, D)
            logits = g @ table.t() / self.tau  # (B, C)
        probs, indices = logits.softmax(dim=-1).topk(self.top_k, dim=-1)  # (B, K)
        mask = probs > self.concept_threshold  # (B, K)
        embeds = table[indices] * mask[..., None]  # (B, K, D)
        return SalientConcepts(indices, probs, embeds, mask)

    def textual_patches(self, patch_joint: torch.Tensor,
                        concepts: SalientConcepts) -> tuple:
        """Patch-concept similarities and textual patches.

        A masked concept has a zero embedding, so its similarity is 0 and it
        adds nothing to ``V_T``, while its softmax weight still counts, as in
        the release.

        Args:
            patch_joint (torch.Tensor): ``(B, N, D)`` normalised patches in
                CLIP's joint space.
            concepts (SalientConcepts): The image's salient concepts.

        Returns:
            tuple[torch.Tensor, torch.Tensor]: ``A`` of shape ``(B, N, K)``
            (cosine similarities) and ``V_T`` of shape ``(B, N, D)``.
        """
        with fp32_region(patch_joint.device):
            embeds = concepts.embeds.float()  # (B, K, D)
            sim = patch_joint.float() @ embeds.transpose(1, 2)  # (B, N, K)
            weights = (sim / self.tau).softmax(dim=-1)  # (B, N, K)
            return sim, weights @ embeds  # (B, N, D)

    def select_patches(self, sim: torch.Tensor,
                       concept_mask: torch.Tensor) -> torch.Tensor:
        """Pick the patches of the top-M patch-concept entries.

        The softmax over all ``N*K`` entries is monotonic, so its top-M
        entries are those of ``A * mask`` itself.

        Args:
            sim (torch.Tensor): ``(B, N, K)`` patch-concept similarities.
            concept_mask (torch.Tensor): ``(B, K)`` bool concept mask.

        Returns:
            torch.Tensor: ``(B, N)`` bool, True for selected patches.
        """
        b, n, k = sim.shape
        scores = (sim * concept_mask[:, None, :]).flatten(1)  # (B, N*K)
        entries = scores.topk(min(self.num_selected, n * k), dim=-1).indices
        patch_ids = torch.div(entries, k, rounding_mode='floor')  # (B, M)
        selected = torch.zeros(b, n, dtype=torch.bool, device=sim.device)
        return selected.scatter_(1, patch_ids, True)  # (B, N)

    @torch.no_grad()
    def explain(self, patch_joint: torch.Tensor,
                global_embed: torch.Tensor) -> ConceptPicture:
        """The concepts PCM retrieves and the patches it selects.

        The same steps as :meth:`forward` at inference (METHOD.md steps 3
        and 4), without the embedding.

        Args:
            patch_joint (torch.Tensor): ``(B, N, D)`` patches in CLIP's
                joint space.
            global_embed (torch.Tensor): ``(B, D)`` image embedding.

        Returns:
            ConceptPicture: Concepts and selected patches per image.
        """
        concepts = self.retrieve_concepts(global_embed)
        joint = F.normalize(patch_joint.float(), dim=-1)  # (B, N, D)
        sim, _ = self.textual_patches(joint, concepts)  # (B, N, K)
        selected = self.select_patches(sim, concepts.mask)  # (B, N)
        masked = sim.masked_fill(~concepts.mask[:, None, :], float('-inf'))
        best, which = masked.max(dim=-1)  # (B, N)
        best = torch.where(torch.isfinite(best), best, torch.zeros_like(best))
        return ConceptPicture(concepts.indices, concepts.probs, concepts.mask,
                              selected, which, best)

    # ------------------------------------------------------------ embedding
    def _embed(self, x: torch.Tensor, positions: torch.Tensor,
               types: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(positions) + self.type_embed(types)
        return self.dropout(self.norm(F.relu(x)))

    def forward(self, patch_tokens: torch.Tensor, patch_joint: torch.Tensor,
                global_embed: torch.Tensor) -> PCMTokens:
        """Build the encoder's input tokens.

        Args:
            patch_tokens (torch.Tensor): ``(B, N, Dv)`` CLIP patch tokens
                before ``ln_post``.
            patch_joint (torch.Tensor): ``(B, N, D)`` the same patches in
                CLIP's joint space, normalised.
            global_embed (torch.Tensor): ``(B, D)`` normalised global
                embedding.

        Returns:
            PCMTokens: Tokens, padding mask and selected patches.
        """
        b, n, _ = patch_tokens.shape
        device = patch_tokens.device
        positions = torch.arange(1 + n, device=device).expand(b, -1)  # (B, 1+N)
        visual = self.visual_proj(patch_tokens)  # (B, N, d)
        g = F.normalize(global_embed, dim=-1)
        if self.training and self.noise_std > 0:
            # release: normalise, add noise, normalise again
            g = F.normalize(g + torch.randn_like(g) * self.noise_std, dim=-1)
        global_tok = self.global_proj(g)[:, None]  # (B, 1, d)
        selected = torch.zeros(b, n, dtype=torch.bool, device=device)
        if not self.mixup:
            tokens = torch.cat([global_tok, visual], dim=1)  # (B, 1+N, d)
            types = torch.zeros_like(positions)
            padding = torch.zeros_like(positions, dtype=torch.bool)
            return PCMTokens(self._embed(tokens, positions, types), padding,
                             selected)

        with torch.no_grad():
            concepts = self.retrieve_concepts(global_embed)
            joint = F.normalize(patch_joint.float(), dim=-1)  # (B, N, D)
            sim, text = self.textual_patches(joint, concepts)
            selected = self.select_patches(sim, concepts.mask)  # (B, N)
        textual = self.textual_proj(text.to(visual.dtype))  # (B, N, d)
        no_global = torch.zeros(b, 1, dtype=torch.bool, device=device)
        if self.training:
            r = selected[..., None].to(visual.dtype)  # (B, N, 1)
            mixed = visual * (1 - r) + textual * r  # (B, N, d)
            tokens = torch.cat([global_tok, mixed], dim=1)  # (B, 1+N, d)
            types = torch.cat([no_global, selected], dim=1).long()  # (B, 1+N)
            padding = torch.zeros_like(positions, dtype=torch.bool)
            return PCMTokens(self._embed(tokens, positions, types), padding,
                             selected)
        tokens = torch.cat([global_tok, visual, textual], dim=1)  # (B, 1+2N, d)
        positions = torch.cat([positions, positions[:, 1:]], dim=1)  # (B, 1+2N)
        types = torch.cat([
            torch.full((b, 1 + n), VISUAL_TOKEN, device=device),
            torch.full((b, n), TEXTUAL_TOKEN, device=device)
        ], dim=1)  # (B, 1+2N)
        padding = torch.cat(
            [torch.zeros(b, 1 + n, dtype=torch.bool, device=device),
             ~selected], dim=1)  # (B, 1+2N)
        return PCMTokens(self._embed(tokens, positions, types), padding,
                         selected)
