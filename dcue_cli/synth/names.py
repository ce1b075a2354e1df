"""MSD-like ids (tracks, songs, users) and made-up artist names and song titles."""

import numpy as np

_LETTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_ALNUM = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))


def msd_like_ids(rng: np.random.Generator, prefix: str, n: int) -> list:
    """`n` distinct ids like the MSD's (TRAAAAW128F429D538): prefix, 5 letters, 11 alphanumerics."""
    ids, seen = [], set()
    while len(ids) < n:
        k = n - len(ids)
        letters = _LETTERS[rng.integers(0, 26, size=(k, 5))]
        rest = _ALNUM[rng.integers(0, 36, size=(k, 11))]
        for row in np.concatenate([letters, rest], axis=1):
            text = prefix + "".join(row)
            if text not in seen:
                seen.add(text)
                ids.append(text)
    return ids


def user_like_ids(rng: np.random.Generator, n: int) -> list:
    """`n` distinct 40-hex user ids, like the Taste Profile's."""
    ids, seen = [], set()
    while len(ids) < n:
        text = rng.bytes(20).hex()
        if text not in seen:
            seen.add(text)
            ids.append(text)
    return ids


_SYLLABLES = ("ka", "lo", "mi", "ra", "ven", "tor", "sa", "el", "da", "mor", "ni", "zu", "bel", "cor", "an",
              "ri", "us", "ta", "lin", "go", "fa", "re", "shi", "vo", "la", "den", "ox", "py", "qui", "nor")
_WORDS = ("Midnight", "River", "Love", "Electric", "Golden", "Summer", "Shadow", "Fire", "Dream", "Blue",
          "Heart", "City", "Rain", "Silver", "Wild", "Ocean", "Lights", "Echo", "Stone", "Paper", "Winter",
          "Ghost", "Velvet", "Morning", "Neon", "Broken", "Sugar", "Highway", "Moon", "Garden", "Static",
          "Crystal", "Thunder", "Honey", "Northern", "Falling", "Secret", "Lonely", "Dancing", "Radio")
_BAND_NOUNS = ("Wolves", "Lights", "Machines", "Sisters", "Kings", "Rivers", "Echoes", "Satellites",
               "Ghosts", "Tigers", "Strangers", "Saints", "Horses", "Pilots", "Architects", "Comets")


def word(rng) -> str:
    """A made-up word of 2 or 3 syllables, capitalised."""
    return "".join(rng.choice(_SYLLABLES, size=int(rng.integers(2, 4)))).capitalize()


def artist_names(rng: np.random.Generator, n: int) -> list:
    """`n` distinct band or artist names."""
    names, seen = [], set()
    while len(names) < n:
        kind = rng.random()
        if kind < 0.45:
            name = f"{word(rng)} {word(rng)}"
        elif kind < 0.8:
            name = f"The {rng.choice(_WORDS)} {rng.choice(_BAND_NOUNS)}"
        else:
            name = word(rng)
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def song_titles(rng: np.random.Generator, n: int) -> list:
    """`n` song titles (not distinct), a fifth of them remixes."""
    out = []
    for _ in range(n):
        words = rng.choice(_WORDS, size=int(rng.integers(1, 4)), replace=False)
        out.append(" ".join(words) if rng.random() < 0.8 else f"{' '.join(words)} ({word(rng)} Remix)")
    return out
