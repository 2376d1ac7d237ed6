"""Loader for the pretraining corpus (:mod:`helixflow.corpus`): memory-mapped shards, seeded
shuffling split across ranks, reverse-complement and shift augmentation, one-hot N encodings
and an optional extra input channel.

Every random choice is a function of (seed, epoch, window index) only, so the batches do not
depend on the number of worker processes, and a run resumed at batch ``start_batch`` sees
exactly the batches the killed run would have seen.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .corpus import verify_corpus
from .errors import InputError
from .files import read_json
from .tokenize import SPECIALS, Tokenizer

N_ENCODINGS = ("uniform", "centred")
_STREAM_AUGMENT = 1


class TokenCorpus(Dataset):
    """Random access to the windows of a corpus across its shards (memory-mapped).

    ``corpus[i]`` gives ``(tokens, coords)``: tokens shape=(n_tokens,) in the tokenizer dtype,
    coords ``(chromosome index, start bp)``. :meth:`rows` reads many at once. Shards are opened
    lazily in each process, so the dataset pickles small into worker processes.
    """

    def __init__(self, manifest_path: str | Path, verify: bool = True) -> None:
        self.manifest_path = Path(manifest_path)
        self.manifest = (verify_corpus(self.manifest_path) if verify
                         else read_json(self.manifest_path))
        tok = self.manifest["tokenizer"]
        self.tokenizer = Tokenizer(tok["k"], tok["stride"])
        self.chromosomes: list[str] = self.manifest["chromosomes"]
        self.window_bp: int = self.manifest["window_bp"]
        self.n_tokens: int = self.manifest["n_tokens"]
        counts = [s["n_windows"] for s in self.manifest["shards"]]
        self.offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        self._maps: _ShardFiles | None = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": None}

    def rows(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tokens shape=(n, n_tokens) and coords int64 shape=(n, 2) of global ``indices``."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"window index out of range 0..{len(self) - 1}")
        if self._maps is None:
            self._maps = _ShardFiles(self)
        shard = np.searchsorted(self.offsets, indices, side="right") - 1
        return self._maps.gather(shard, indices - self.offsets[shard])

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        tokens, coords = self.rows(np.array([index]))
        return tokens[0], coords[0]


class _ShardFiles:
    """Open files of every shard; a row read is one positional read (``os.pread``).

    Not memory maps: random rows of a mapped multi-GB corpus pull their neighbouring pages
    into the process (fault-around), so its resident memory grew to the corpus's size (4 GB
    for the full-size synthetic hg38); a read leaves the pages in the page cache only."""

    def __init__(self, corpus: TokenCorpus) -> None:
        root = corpus.manifest_path.parent
        self.tokens, self.coords, token_starts, coord_starts = [], [], [], []
        for shard in corpus.manifest["shards"]:
            n = shard["n_windows"]
            tfile, tstart = _open_npy(root / shard["path"], (n, corpus.n_tokens),
                                      corpus.tokenizer.dtype)
            cfile, cstart = _open_npy(root / shard["coords"], (n, 2), np.dtype(np.int64))
            self.tokens.append(tfile)
            self.coords.append(cfile)
            token_starts.append(tstart)
            coord_starts.append(cstart)
        self.token_fds = [f.fileno() for f in self.tokens]
        self.coord_fds = [f.fileno() for f in self.coords]
        self.token_starts, self.coord_starts = np.array(token_starts), np.array(coord_starts)
        self.dtype, self.width = corpus.tokenizer.dtype, corpus.n_tokens
        self.token_bytes = self.dtype.itemsize * self.width

    def gather(self, shard: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, size = len(shard), self.token_bytes
        shards = shard.tolist()
        token_at = (self.token_starts[shard] + row * size).tolist()
        coord_at = (self.coord_starts[shard] + row * 16).tolist()
        tfds, cfds = self.token_fds, self.coord_fds
        tokens = b"".join([os.pread(tfds[s], size, a) for s, a in zip(shards, token_at,
                                                                      strict=True)])
        coords = b"".join([os.pread(cfds[s], 16, a) for s, a in zip(shards, coord_at,
                                                                    strict=True)])
        return (np.frombuffer(tokens, dtype=self.dtype).reshape(n, self.width).copy(),
                np.frombuffer(coords, dtype=np.int64).reshape(n, 2).copy())


def _open_npy(path: Path, shape: tuple[int, int], dtype: np.dtype) -> tuple[BinaryIO, int]:
    """An open 2-D .npy file and the byte offset of its data; checks the header."""
    handle = open(path, "rb")  # noqa: SIM115 - kept open for the corpus's reads
    version = np.lib.format.read_magic(handle)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    found_shape, fortran, found_dtype = read_header(handle)
    if tuple(found_shape) != tuple(shape) or fortran or found_dtype != dtype:
        handle.close()
        raise InputError(f"shard has shape {found_shape} {found_dtype}, the manifest says "
                         f"{tuple(shape)} {dtype}", path=path,
                         fix="rebuild the corpus (delete the directory and re-run)")
    return handle, handle.tell()


def _dist_rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Rank and world size: as given, else from torch.distributed when initialised, else 0, 1."""
    if rank is None or world_size is None:
        initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
        if rank is None:
            rank = torch.distributed.get_rank() if initialised else 0
        if world_size is None:
            world_size = torch.distributed.get_world_size() if initialised else 1
    if not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return rank, world_size


class EpochSampler(Sampler):
    """Batches of window indices for one rank in one epoch.

    The epoch's order is a permutation drawn from (seed, epoch), the same on every rank. The
    last ``n % world_size`` windows of that order are dropped (a different few each epoch when
    shuffling), so every rank gets the same number of windows and no window is seen twice in an
    epoch; rank r takes positions r, r + world_size, ... . Batches of ``batch_size`` (the last
    one shorter unless ``drop_last``); the first ``start_batch`` batches are skipped, to resume
    a killed run exactly. ``len()`` counts the batches it yields.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int = 0,
                 rank: int | None = 0, world_size: int | None = 1, shuffle: bool = True,
                 drop_last: bool = False,
                 start_batch: int = 0) -> None:
        if batch_size < 1 or start_batch < 0:
            raise ValueError("need batch_size >= 1 and start_batch >= 0")
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.rank, self.world_size = _dist_rank_world(rank, world_size)
        self.shuffle, self.drop_last, self.start_batch = shuffle, drop_last, start_batch
        self.per_rank = n // self.world_size
        full, rest = divmod(self.per_rank, batch_size)
        self.batches_per_epoch = full + (1 if rest and not drop_last else 0)
        if start_batch > self.batches_per_epoch:
            raise ValueError(f"start_batch {start_batch} is past the epoch's "
                             f"{self.batches_per_epoch} batches")

    def indices(self) -> np.ndarray:
        """This rank's windows for the whole epoch, in order, shape=(per_rank,)."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        return order[:self.per_rank * self.world_size][self.rank::self.world_size]

    def __iter__(self) -> Iterator[np.ndarray]:
        mine = self.indices()
        for b in range(self.start_batch, self.batches_per_epoch):
            yield mine[b * self.batch_size:(b + 1) * self.batch_size]

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start_batch


_MASK64 = 2**64 - 1
_GOLDEN, _M1, _M2 = 0x9E3779B97F4A7C15, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53


def _mix64_int(x: int) -> int:
    """splitmix64 on one Python int."""
    x = (x + _GOLDEN) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def hash_bits(seed: int, epoch: int, index: np.ndarray, stream: int) -> np.ndarray:
    """uint64 per index that depends only on (seed, epoch, index, stream): MurmurHash3's
    64-bit finaliser of ``index * golden + key``, the key a splitmix64 of the other three."""
    key = 0
    for part in (seed, epoch, stream):
        key = _mix64_int(key ^ (part & _MASK64))
    # array arithmetic on uint64 wraps modulo 2**64 silently, as the hash wants
    x = np.asarray(index).astype(np.uint64) * np.uint64(_GOLDEN) + np.uint64(key)
    x ^= x >> np.uint64(33)
    x *= np.uint64(_M1)
    x ^= x >> np.uint64(33)
    x *= np.uint64(_M2)
    x ^= x >> np.uint64(33)
    return x


def hash_uniform(seed: int, epoch: int, index: np.ndarray, stream: int) -> np.ndarray:
    """Uniform [0, 1) numbers (53 bits), one per index, from :func:`hash_bits`."""
    return (hash_bits(seed, epoch, index, stream) >> np.uint64(11)) * 2.0**-53


def hash_uniform2(seed: int, epoch: int, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent uniform [0, 1) numbers per index (32 bits each): the high and the low
    half of one :func:`hash_bits` value."""
    x = hash_bits(seed, epoch, index, _STREAM_AUGMENT)
    return (x >> np.uint64(32)) * 2.0**-32, (x & np.uint64(0xFFFFFFFF)) * 2.0**-32


class AugmentedWindows(Dataset):
    """Whole batches of windows, augmented: ``dataset[indices]`` → compact numpy arrays
    {"tokens": tokenizer dtype (B, L), "coords": int64 (B, 3)[, "track": float32 (B, L)]};
    :class:`WindowLoader` expands them to tensors. See :func:`make_loader` for the options.
    """

    def __init__(self, corpus: TokenCorpus, seed: int, epoch: int, rc_prob: float = 0.5,
                 max_shift: int = 0, train: bool = True, output: str = "tokens",
                 n_encoding: str = "uniform",
                 extra_track: Mapping[str, np.ndarray] | None = None) -> None:
        tok = corpus.tokenizer
        if output not in ("tokens", "onehot"):
            raise ValueError(f"output must be 'tokens' or 'onehot', got {output!r}")
        if n_encoding not in N_ENCODINGS:
            raise ValueError(f"n_encoding must be one of {N_ENCODINGS}, got {n_encoding!r}")
        if output == "onehot" and tok.k != 1:
            raise ValueError(f"one-hot output needs a corpus of single nucleotides (k=1), "
                             f"this one has k={tok.k}; build one with k=1")
        if extra_track is not None and tok.k != 1:
            raise ValueError("an extra track needs a corpus of single nucleotides (k=1)")
        if max_shift < 0 or max_shift % tok.stride or max_shift >= corpus.window_bp - tok.k + 1:
            raise ValueError(f"max_shift must be a multiple of the token stride "
                             f"({tok.stride}) in 0..{corpus.window_bp - tok.k}")
        if extra_track is not None:
            absent = [c for c in corpus.chromosomes if c not in extra_track]
            if absent:
                raise ValueError(f"extra_track lacks chromosomes {absent[:5]}")
        self.corpus, self.seed, self.epoch = corpus, seed, epoch
        self.rc_prob, self.max_shift, self.train = rc_prob, max_shift, train
        self.output, self.n_encoding, self.extra_track = output, n_encoding, extra_track
        self.crop_bp = corpus.window_bp - max_shift
        self.crop_tokens = tok.n_tokens(self.crop_bp)

    def __len__(self) -> int:
        return len(self.corpus)

    def __getitem__(self, indices) -> dict[str, np.ndarray]:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        tokens, coords = self.corpus.rows(indices)
        tok = self.corpus.tokenizer
        n = len(indices)
        if self.train:
            u_rc, u_shift = hash_uniform2(self.seed, self.epoch, indices)
            rc = u_rc < self.rc_prob
            steps = self.max_shift // tok.stride + 1
            shift = (u_shift * steps).astype(np.int64) * tok.stride
        else:                                          # evaluation: centred crop, no RC
            rc = np.zeros(n, dtype=bool)
            shift = np.full(n, self.max_shift // tok.stride // 2 * tok.stride, dtype=np.int64)
        if self.max_shift:                             # row i keeps tokens from shift_i / stride
            crops = np.lib.stride_tricks.sliding_window_view(tokens, self.crop_tokens, axis=1)
            tokens = crops[np.arange(n), shift // tok.stride]
        if rc.any():
            tokens[rc] = tok.reverse_complement(tokens[rc])
        out = {"tokens": tokens,
               "coords": np.stack([coords[:, 0], coords[:, 1] + shift, rc], axis=1)}
        if self.extra_track is not None:
            out["track"] = self._track(coords[:, 0], out["coords"][:, 1], rc)
        return out

    def _track(self, chrom: np.ndarray, starts: np.ndarray, rc: np.ndarray) -> np.ndarray:
        """Extra channel, float32 shape=(n, crop_bp), reversed with reverse-complemented rows."""
        track = np.empty((len(starts), self.crop_bp), dtype=np.float32)
        for i, (c, s) in enumerate(zip(chrom, starts, strict=True)):
            values = self.extra_track[self.corpus.chromosomes[c]][s:s + self.crop_bp]
            track[i] = values[::-1] if rc[i] else values
        return track


_ACGT_IDS = np.arange(len(SPECIALS), len(SPECIALS) + 4).reshape(1, 4, 1)


def one_hot_from_tokens(tokens: np.ndarray, n_encoding: str = "uniform") -> np.ndarray:
    """float32 shape=(n, 4, L) from single-nucleotide token ids, shape=(n, L).

    'uniform': A, C, G, T one-hot and N (or any special token) 0.25 in every channel;
    'centred': the same minus 0.25, so N is all-zero and contributes nothing to a convolution,
    and every column sums to 0.
    """
    if n_encoding not in N_ENCODINGS:
        raise ValueError(f"n_encoding must be one of {N_ENCODINGS}, got {n_encoding!r}")
    tokens = np.asarray(tokens)
    first = len(SPECIALS)                                   # id of A
    if tokens.size and tokens.max() > first + 3:
        raise ValueError(f"token ids above {first + 3}: one-hot needs single-nucleotide (k=1) "
                         "tokens")
    x = np.empty((tokens.shape[0], 4, tokens.shape[1]), dtype=np.float32)
    np.equal(tokens[:, None, :], _ACGT_IDS, out=x, casting="unsafe")
    unknown = tokens < first                                # N ([UNK]) and other specials
    if unknown.any():
        x += 0.25 * unknown[:, None, :]
    if n_encoding == "centred":
        x -= 0.25
    return x


def make_loader(manifest: str | Path, batch_size: int, seed: int, epoch: int = 0,
                rank: int | None = None, world_size: int | None = None, rc_prob: float = 0.5,
                max_shift: int = 0, output: str = "tokens", n_encoding: str = "uniform",
                extra_track: Mapping[str, np.ndarray] | None = None, num_workers: int = 0,
                pin_memory: bool | None = None, start_batch: int = 0, train: bool = True,
                shuffle: bool = True, drop_last: bool = False, verify: bool = True,
                ) -> WindowLoader:
    """A DataLoader over a corpus for one epoch of one rank.

    Yields dicts: ``"tokens"`` LongTensor shape=(B, L) (output 'tokens'; L = tokens of a
    ``window_bp - max_shift`` crop) or ``"x"`` FloatTensor shape=(B, 4 or 5, L) (output
    'onehot', k=1 corpora; N encoded by ``n_encoding``; the extra track as channel 5), plus
    ``"coords"`` LongTensor shape=(B, 3): chromosome index, crop start bp, 1 if reverse
    complemented; and ``"track"`` FloatTensor shape=(B, L) with tokens and an extra track.

    rc_prob: chance of reverse-complementing a window; max_shift: a random crop of
    ``window_bp - max_shift`` bp at offset 0..max_shift (``train=False``: centred crop, no RC).
    extra_track: ``{chrom: float array over the whole chromosome}`` (a np.memmap keeps memory
    flat), aligned base by base with the sequence and reversed with it.
    rank / world_size: default to torch.distributed's when initialised, else 0 / 1.
    ``len(loader)`` = batches this loader yields (the epoch's batches minus ``start_batch``);
    ``loader.batches_per_epoch`` = the whole epoch's. pin_memory defaults to CUDA availability.
    """
    corpus = TokenCorpus(manifest, verify=verify)
    windows = AugmentedWindows(corpus, seed, epoch, rc_prob=rc_prob, max_shift=max_shift,
                               train=train, output=output, n_encoding=n_encoding,
                               extra_track=extra_track)
    sampler = EpochSampler(len(corpus), batch_size, seed, epoch, rank=rank,
                           world_size=world_size, shuffle=shuffle, drop_last=drop_last,
                           start_batch=start_batch)
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    loader = WindowLoader(windows, sampler=sampler, batch_size=None, num_workers=num_workers,
                          collate_fn=_as_is, persistent_workers=False)
    loader.pin = pin_memory
    loader.batches_per_epoch = sampler.batches_per_epoch
    return loader


def _as_is(batch: dict) -> dict:
    return batch


class WindowLoader(DataLoader):
    """A DataLoader whose workers send compact batches (uint8/uint16 tokens: a few kB through
    the pipe) that the main process expands to tensors: LongTensor tokens, or the float one-hot,
    pinned when ``pin`` is set. Sending the expanded tensors costs more than making them."""

    pin = False

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in super().__iter__():
            yield self.expand(batch)

    def expand(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        out = {"coords": torch.from_numpy(batch["coords"])}
        track = batch.get("track")
        windows = self.dataset                 # an AugmentedWindows: output, n_encoding
        if windows.output == "tokens":
            out["tokens"] = torch.from_numpy(batch["tokens"].astype(np.int64))
            if track is not None:
                out["track"] = torch.from_numpy(track)
        else:
            x = one_hot_from_tokens(batch["tokens"], windows.n_encoding)
            if track is not None:
                x = np.concatenate([x, track[:, None, :]], axis=1)
            out["x"] = torch.from_numpy(x)
        if self.pin:
            out = {key: value.pin_memory() for key, value in out.items()}
        return out
