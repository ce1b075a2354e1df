"""The deep content-user embedding networks and their losses (no I/O, no devices, no files).

Defaults are the paper's and the authors' released Keras code (docs/design.md, "The model"):

    audio  (B, frames, n_mels) -> Conv1D over time, mel bins as channels, 'same' padding, ReLU:
           128 k4 -> maxpool 4; 256 k4 -> pool 4; 256 k4 -> pool 4; 256 k2 -> pool 2; 256 k1;
           global average pool; linear 256 (the item vector)
    user   embedding (n_users x 300) -> ReLU -> linear 300 -> ReLU -> linear 256 (the user vector)
    relevance: cosine; loss: hinge with margin 0.2 over 20 negatives

Batch norm after each convolution is on by default (`batch_norm`): the authors' released code
names its layers `*_bn` but applies none, while the audio model they follow [Park et al. 2018]
uses it; without it, SGD or Adam on the cosine drives the item vectors' norm up until the
gradient (∝ 1/|v|) vanishes and every song points the same way (measured on synth audio:
the validation AUC stays at 0.51). `batch_norm=False` is the literal released network.

Initialisation follows Keras' defaults the authors trained with (He-uniform convolutions,
Glorot-uniform dense layers, zero biases), except the user lookup: N(0, 1) rather than
Keras' uniform(±0.05) (see `ModelConfig.user_init_std`; 0 restores the authors'), and the
output biases are then centred on data (`centre_outputs_`).
"""

from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class ModelConfig:
    """Every size of the networks; `to_dict`/`from_dict` make it a plain checkpoint entry."""

    n_users: int = 0  # 0: no user side (the WMF+Regression model is audio only)
    n_mels: int = 128
    crop_frames: int = 130  # 3 s at 22050 Hz, hop 512
    conv_channels: tuple[int, ...] = (128, 256, 256, 256, 256)
    conv_kernels: tuple[int, ...] = (4, 4, 4, 2, 1)
    pool_sizes: tuple[int, ...] = (4, 4, 4, 2, 1)  # 1 = no pooling after that layer
    embed_dim: int = 256
    user_embed_dim: int = 300
    user_hidden: tuple[int, ...] = (300,)
    batch_norm: bool = True
    # std of the user lookup's initial N(0, std) entries. Keras' uniform(±0.05), the authors',
    # makes user vectors so short that the cosine's gradient (∝ 1/|u|) first drives the shared
    # output bias and every user collapses onto one vector (a popularity model): 1 keeps them apart.
    user_init_std: float = 1.0
    # the artist embedding added to the audio's item vector (`ArtistNet`): the vocabulary's size,
    # index 0 the unknown artist; 0: none (the paper's audio-only item tower)
    n_artists: int = 0
    # the artist vector is the lookup times this. Under SGD it moves the vectors scale² times faster:
    # at 1 they stay ~200 times shorter than the audio's (norm ~10) and change no cosine (measured
    # on the demo: 0.05 after 500 steps), so the artist is never heard
    artist_scale: float = 10.0
    # how the audio network's last feature map becomes one vector: "mean" over time (the paper's
    # global average pooling), or "meanstd", the mean and the standard deviation over time
    # (statistics pooling): how much a feature varies within the crop, not only its level
    pooling: str = "mean"
    # a 2-D front end before the 1-D network: one 3x3 convolution (batch norm, ReLU) per entry,
    # that many channels, each followed by a max-pool of 2 over frequency, so what it learns of
    # a harmonic pattern or a vibrato holds at every pitch; the 1-D network then reads channels x
    # n_mels / 2^layers bands. (): none, the paper's network. On a CPU ~14x the cost per crop, 5x a step.
    stem_channels: tuple[int, ...] = ()

    def __post_init__(self):
        self.conv_channels = tuple(int(c) for c in self.conv_channels)
        self.conv_kernels = tuple(int(k) for k in self.conv_kernels)
        self.pool_sizes = tuple(int(p) for p in self.pool_sizes)
        self.user_hidden = tuple(int(h) for h in self.user_hidden)
        self.stem_channels = tuple(int(c) for c in self.stem_channels)
        if not (len(self.conv_channels) == len(self.conv_kernels) == len(self.pool_sizes)):
            raise ValueError("conv_channels, conv_kernels and pool_sizes must have the same length")
        if not self.conv_channels:
            raise ValueError("the audio network needs at least one convolution")
        if min(self.conv_channels + self.conv_kernels + self.pool_sizes) < 1 or self.embed_dim < 1:
            raise ValueError("every size must be at least 1")
        if self.n_artists < 0 or self.n_artists == 1:
            raise ValueError("n_artists is 0 (no artist embedding) or the unknown artist and at least one more")
        if self.stem_channels and (min(self.stem_channels) < 1 or self.n_mels >> len(self.stem_channels) < 1):
            raise ValueError(f"stem_channels {self.stem_channels}: positive sizes, at most log2(n_mels) layers")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {self.pooling!r}")
        if self.frames_after_pooling() < 1:
            raise ValueError(f"a crop of {self.crop_frames} frames is pooled away by pools "
                             f"{self.pool_sizes}: use longer crops or less pooling")

    def frames_after_pooling(self) -> int:
        n = self.crop_frames
        for p in self.pool_sizes:
            n //= p
        return n

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        d = {**BEFORE_POOLING, **d}  # a checkpoint from before --pooling pooled by the mean
        return cls(**{k: v for k, v in d.items() if k in known})


POOLINGS = ("mean", "meanstd")
# what a checkpoint written before ModelConfig.pooling existed was built with
BEFORE_POOLING = {"pooling": "mean", "stem_channels": ()}


class FrequencyStem(nn.Module):
    """(B, frames, n_mels) -> (B, frames, channels x n_mels / 2^layers): 2-D convolutions over
    (time, frequency), each pooled by 2 over frequency only (time is the 1-D network's to pool)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        layers, in_ch, bands = [], 1, cfg.n_mels
        for ch in cfg.stem_channels:
            layers.append(nn.Conv2d(in_ch, ch, 3, padding=1, bias=not cfg.batch_norm))
            if cfg.batch_norm:
                layers.append(nn.BatchNorm2d(ch))
            layers += [nn.ReLU(inplace=True), nn.MaxPool2d((1, 2))]
            in_ch, bands = ch, bands // 2
        self.layers = nn.Sequential(*layers)
        self.out_channels = in_ch * bands

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        z = self.layers(crops.unsqueeze(1))  # (B, C, frames, bands)
        return z.permute(0, 2, 1, 3).flatten(2)


class AudioNet(nn.Module):
    """Log-mel crops (B, frames, n_mels) -> item vectors (B, embed_dim)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.stem = FrequencyStem(cfg) if cfg.stem_channels else None
        layers = []
        in_ch = cfg.n_mels if self.stem is None else self.stem.out_channels
        for ch, k, p in zip(cfg.conv_channels, cfg.conv_kernels, cfg.pool_sizes):
            if k > 1:  # 'same' padding, one more on the right for an even kernel, as Keras does
                layers.append(nn.ConstantPad1d(((k - 1) // 2, k - 1 - (k - 1) // 2), 0.0))
            layers.append(nn.Conv1d(in_ch, ch, k, bias=not cfg.batch_norm))
            if cfg.batch_norm:
                layers.append(nn.BatchNorm1d(ch))
            layers.append(nn.ReLU(inplace=True))
            if p > 1:
                layers.append(nn.MaxPool1d(p))
            in_ch = ch
        self.features = nn.Sequential(*layers)
        self.with_std = cfg.pooling == "meanstd"
        self.project = nn.Linear(in_ch * (2 if self.with_std else 1), cfg.embed_dim)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        if self.stem is not None:
            crops = self.stem(crops)
        x = self.features(crops.transpose(1, 2))  # conv over time, mel bins (or stem bands) as channels
        pooled = x.mean(dim=2)
        if self.with_std:  # the population std: 0, not NaN, over a single frame
            pooled = torch.cat([pooled, x.std(dim=2, correction=0)], dim=1)
        return self.project(pooled)


class UserNet(nn.Module):
    """User indices (B,) -> user vectors (B, embed_dim)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embedding = nn.Embedding(cfg.n_users, cfg.user_embed_dim)
        layers = []
        width = cfg.user_embed_dim
        for h in cfg.user_hidden:
            layers += [nn.ReLU(), nn.Linear(width, h)]
            width = h
        layers += [nn.ReLU(), nn.Linear(width, cfg.embed_dim)]
        self.mlp = nn.Sequential(*layers)

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embedding(users))


class ArtistNet(nn.Module):
    """Artist indices (B,) -> a vector added to the audio's item vector (B, embed_dim).

    Index 0 is the unknown artist: a song whose artist has no training songs, and (artist
    dropout, in training) any song some of the time, so the audio alone must place it.
    Initialised at zero, so training starts from the audio-only model.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        # zeros without a random draw: the rest of the model starts as the audio-only one would
        self.embedding = nn.Embedding.from_pretrained(torch.zeros(cfg.n_artists, cfg.embed_dim), freeze=False)
        self.scale = float(cfg.artist_scale)

    def forward(self, artists: torch.Tensor) -> torch.Tensor:
        return self.scale * self.embedding(artists)


class DCUE(nn.Module):
    """The two towers. One forward call computes both, so DistributedDataParallel sees it all."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.audio = AudioNet(cfg)
        self.user = UserNet(cfg) if cfg.n_users > 0 else None
        keras_init_(self)
        if self.user is not None and cfg.user_init_std > 0:
            nn.init.normal_(self.user.embedding.weight, 0.0, cfg.user_init_std)
        self.artist = ArtistNet(cfg) if cfg.n_artists > 0 else None  # last: it draws nothing

    def forward(self, crops: torch.Tensor, users: torch.Tensor | None = None,
                artists: torch.Tensor | None = None):
        items = self.add_artists(self.audio(crops), artists)
        if users is None or self.user is None:
            return items
        return self.user(users), items

    def add_artists(self, items: torch.Tensor, artists: torch.Tensor | None) -> torch.Tensor:
        """Audio item vectors plus their artists' (index 0: unknown); as they are without an artist
        embedding or indices. An item vector is the mean over crops, so this adds to the mean too."""
        if self.artist is None or artists is None:
            return items
        return items + self.artist(artists.to(items.device))

    def user_vectors(self, users: torch.Tensor) -> torch.Tensor:
        return self.user(users)


class IndexTowers(nn.Module):
    """The paper's ablation (section 5.1): DCUE with the item side built like the user side, a
    lookup of song indices and the same MLP, so a song is known by its plays, not its audio.
    Both lookups start N(0, user_init_std) and both output biases are centred on data, as DCUE's."""

    def __init__(self, cfg: ModelConfig, n_items: int):
        super().__init__()
        self.config = cfg
        self.user = UserNet(cfg)
        self.item = UserNet(replace(cfg, n_users=n_items))
        keras_init_(self)
        for side in (self.user, self.item):
            if cfg.user_init_std > 0:
                nn.init.normal_(side.embedding.weight, 0.0, cfg.user_init_std)
            centre_lookup_tower_(side)

    def forward(self, items: torch.Tensor, users: torch.Tensor):
        return self.user(users), self.item(items)


@torch.no_grad()
def all_user_vectors(model: nn.Module, n_users: int, device, chunk: int = 65536) -> torch.Tensor:
    """(n_users, d) float32: every user's vector (of a DCUE, or of one `UserNet` tower), a chunk at a time."""
    tower = model.user_vectors if isinstance(model, DCUE) else model
    return torch.cat([tower(torch.arange(a, min(a + chunk, n_users), device=device)).float()
                      for a in range(0, n_users, chunk)])


@torch.no_grad()
def centre_outputs_(model: DCUE, crops: torch.Tensor) -> None:
    """Data-dependent initialisation: zero the mean item vector (over `crops`) and user vector.

    Pooled ReLU features are all positive, so a fresh network maps every song to nearly the
    same direction (mean pairwise cosine ~0.94 on synth audio): cosine relevance then cannot
    tell songs apart and its gradient, ∝ 1/|v|, is spent on the common part. Shifting the
    two output biases by minus the mean output starts the cosines spread around 0 instead.
    The architecture is unchanged; only the initial biases move.
    """
    was_training = model.training
    model.train()  # batch norm normalises with this batch's statistics, as in training
    model.audio.project.bias -= model.audio(crops).mean(dim=0)
    if model.user is not None:
        centre_lookup_tower_(model.user)
    model.train(was_training)


@torch.no_grad()
def centre_lookup_tower_(tower: UserNet, chunk: int = 65536) -> None:
    """Zero the mean output of a lookup tower over all its rows (a chunk at a time, never all at once)."""
    n = tower.embedding.num_embeddings
    rows = torch.arange(n, device=tower.embedding.weight.device)
    total = sum(tower(rows[a:a + chunk]).sum(dim=0) for a in range(0, n, chunk))
    tower.mlp[-1].bias -= total / max(1, n)


def keras_init_(module: nn.Module) -> None:
    """Keras' default initialisation, which the authors' learning rate was tuned with."""
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")  # he_uniform
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)  # glorot_uniform
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.uniform_(m.weight, -0.05, 0.05)


# ---- relevance and losses (float32 in, per-pair losses out) ----

def cosine(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Cosine of each user (B, d) with its items (B, K, d) -> (B, K)."""
    u = F.normalize(users.float(), dim=-1, eps=1e-8)
    i = F.normalize(items.float(), dim=-1, eps=1e-8)
    return torch.einsum("bd,bkd->bk", u, i)


def cosine_all(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Cosine of every user (B, d) with every item (K, d) -> (B, K): one matrix product
    (each vector normalised once, not once per user as an expanded `cosine` would)."""
    u = F.normalize(users.float(), dim=-1, eps=1e-8)
    i = F.normalize(items.float(), dim=-1, eps=1e-8)
    return u @ i.T


def hinge_loss(pos: torch.Tensor, neg: torch.Tensor, margin: float,
               neg_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Σ over negatives of max(0, margin − R(u,i⁺) + R(u,i⁻)), per pair: pos (B,), neg (B, K)."""
    terms = torch.clamp(margin - pos.unsqueeze(1) + neg, min=0)
    if neg_mask is not None:
        terms = terms * neg_mask
    return terms.sum(dim=1)


def softmax_loss(pos: torch.Tensor, neg: torch.Tensor, temperature: float,
                 neg_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sampled softmax / InfoNCE: −log softmax of the positive among itself and the negatives."""
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1) / temperature
    if neg_mask is not None:
        keep = torch.cat([torch.ones_like(pos, dtype=torch.bool).unsqueeze(1), neg_mask.bool()], dim=1)
        logits = logits.masked_fill(~keep, float("-inf"))
    return -torch.log_softmax(logits, dim=1)[:, 0]


def regression_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per item over the factor dimensions (van den Oord et al. 2013)."""
    return ((pred.float() - target.float()) ** 2).mean(dim=1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
