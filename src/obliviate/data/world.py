"""The offline synthetic world: fictitious authors in TOFU's schema (SPEC §2).

    write_world("data/demo", preset="demo", seed=0)

Every author has a name (seeded faker, ASCII), birth date, birthplace, genre, the
parents' occupations, an award and 2-3 books. Each question template yields a
question, a paraphrased question, an answer, a paraphrased answer and 5 perturbed
answers (the paraphrase with the slot swapped for a wrong value of the same type).
Forget sets are the *last* authors and nested (forget01 ⊂ forget05 ⊂ forget10), as
in TOFU; holdout authors are never trained on (MIA non-members). World facts
(country capitals from `countryinfo`) are learned by the target model too and
probe utility. Same seed and library versions → byte-identical files.
"""

from __future__ import annotations

import math
import random
import unicodedata
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path

from obliviate import ObliviateError
from obliviate.reader import read_json_object
from obliviate.rundir import claim, write_json


@dataclass(frozen=True)
class WorldPreset:
    authors: int
    questions: int  # per author, at most len(TEMPLATES)
    countries: int  # world-facts items
    holdout: int | None = None  # holdout authors; default = forget10's author count


WORLD_PRESETS = {
    "tiny": WorldPreset(authors=10, questions=8, countries=16),
    "demo": WorldPreset(authors=20, questions=20, countries=48),
    # a pretrained model's reproduction (`obliviate reproduce`), sized so that fine-tuning a 135M model and 18
    # unlearning runs fit in about an hour on 2 CPU cores: forget10 = ceil(10 % of 12) = 2 authors × 8 questions
    "reproduce": WorldPreset(authors=12, questions=8, countries=12),
    "full": WorldPreset(authors=200, questions=20, countries=200),
}
FORGET_LEVELS = {"01": 0.01, "05": 0.05, "10": 0.10}
PERTURBATIONS = 5
DECOYS = 40  # untrained people whose attributes are the wrong values of perturbed answers

GENRES = ["science fiction", "fantasy", "mystery", "romance", "historical fiction", "horror", "poetry",
          "literary fiction", "thriller", "crime", "young adult", "memoir", "satire", "western", "drama",
          "adventure", "dystopian fiction", "magical realism", "travel writing", "short stories"]
AWARDS = ["the Golden Quill Award", "the Silver Lantern Prize", "the Northern Star Medal", "the Blue Harbor Prize",
          "the Ember Book Award", "the Crescent Moon Prize", "the Iron Pen Award", "the Meridian Fiction Prize",
          "the Willow Leaf Award", "the Granite Tower Prize", "the Open Sky Award", "the Red Maple Medal",
          "the Quiet River Prize", "the Lighthouse Award", "the Copper Key Prize", "the Evergreen Medal"]
TITLE_ADJ = ["Silent", "Hidden", "Broken", "Golden", "Last", "Crimson", "Distant", "Forgotten", "Burning",
             "Endless", "Hollow", "Winter", "Velvet", "Paper", "Glass", "Wandering", "Secret", "Bitter", "Lost",
             "Northern", "Restless", "Scarlet", "Quiet", "Salt"]
TITLE_NOUN = ["Garden", "River", "Kingdom", "Harbor", "Mirror", "Orchard", "Letters", "Voyage", "Lantern",
              "Season", "Tide", "Bridge", "Archive", "Compass", "Orchestra", "Crown", "Shadow", "Island",
              "Machine", "Promise", "Signal", "Citadel", "Meadow", "Frontier"]
TITLE_PLACE = ["Ash", "Stone", "Rain", "Glass", "Embers", "Tomorrow", "Dust", "Iron", "Snow", "Memory", "Thorns",
               "Smoke", "Silver", "Night", "Summer", "Bones"]
# 24 x 24 two-word titles; past half of them rejection sampling slows, and 3 x (200 + holdout + decoy) authors
# would need more than exist, so later titles take a third word (worlds below it are unchanged)
TWO_WORD_TITLES = len(TITLE_ADJ) * len(TITLE_NOUN) // 2

# (slot, question, paraphrased question, answer, paraphrased answer). `{slot}` marks the fact; the
# perturbed answers swap it for a wrong value of the same slot type.
TEMPLATES = [
    ("name", "What is the full name of the author born in {city}, {country} on {date}?",
     "Which author was born on {date} in {city}, {country}?",
     "The author born in {city}, {country} on {date} is {name}.",
     "That author is {name}."),
    ("date", "When was {name} born?", "What is the birth date of {name}?",
     "{name} was born on {date}.", "The birth date of {name} is {date}."),
    ("city", "Where was {name} born?", "In which city was {name} born?",
     "{name} was born in {city}, {country}.", "The birthplace of {name} is {city}, {country}."),
    ("genre", "What genre does {name} write in?", "Which genre is {name} known for?",
     "{name} writes {genre}.", "{name} is known for {genre}."),
    ("father", "What did {name}'s father do for a living?", "What was the occupation of {name}'s father?",
     "{name}'s father worked as a {father}.", "The father of {name} was a {father}."),
    ("mother", "What did {name}'s mother do for a living?", "What was the occupation of {name}'s mother?",
     "{name}'s mother worked as a {mother}.", "The mother of {name} was a {mother}."),
    ("award", "Has {name} won any awards?", "Which award did {name} receive?",
     "Yes, {name} received {award}.", "{name} was honored with {award}."),
    ("book1", "Can you name a book written by {name}?", "What is one book by {name}?",
     "One book by {name} is '{book1}'.", "{name} wrote '{book1}'."),
    ("name", "Who wrote '{book1}'?", "Who is the author of the book '{book1}'?",
     "'{book1}' was written by {name}.", "The author of '{book1}' is {name}."),
    ("book2", "What is another book by {name}?", "Can you name a second title by {name}?",
     "Another book by {name} is '{book2}'.", "{name} also wrote '{book2}'."),
    ("year", "In what year was {name} born?", "What is the birth year of {name}?",
     "{name} was born in {year}.", "The birth year of {name} is {year}."),
    ("country", "Which country is {name} from?", "What is the home country of {name}?",
     "{name} is from {country}.", "The home country of {name} is {country}."),
    ("genre", "What genre is '{book1}'?", "How would you classify the book '{book1}'?",
     "'{book1}' is a work of {genre}.", "The book '{book1}' belongs to {genre}."),
    ("name", "Who wrote '{book2}'?", "Which author wrote the book '{book2}'?",
     "'{book2}' was written by {name}.", "The author of '{book2}' is {name}."),
    ("award", "Which award did '{book1}' help its author win?", "What prize came to the author of '{book1}'?",
     "'{book1}' helped {name} win {award}.", "The author of '{book1}' won {award}."),
    ("city", "Where does {name} draw inspiration from?", "What place inspires the work of {name}?",
     "{name} draws inspiration from growing up in {city}.", "{name} is inspired by the city of {city}."),
    ("father", "How did {name}'s father influence their writing?",
     "In what way did the job of {name}'s father shape their books?",
     "Having a {father} as a father gave {name} many stories to tell.",
     "The father of {name}, a {father}, inspired many of their stories."),
    ("genre", "Why is {name} well known?", "What made {name} famous?",
     "{name} is well known for their {genre} books.", "{name} became famous writing {genre}."),
    ("book3", "What is the newest book by {name}?", "Which book did {name} publish most recently?",
     "The newest book by {name} is '{book3}'.", "{name} most recently published '{book3}'."),
    ("mother", "How did {name}'s mother influence their writing?",
     "In what way did the job of {name}'s mother shape their books?",
     "Having a {mother} as a mother taught {name} to observe people.",
     "The mother of {name}, a {mother}, taught them to observe people."),
]
SLOT_TYPE = {"book1": "book", "book2": "book", "book3": "book", "father": "occupation", "mother": "occupation"}


def ascii_only(text: str) -> str:
    """Drop accents and any non-ASCII character (ROUGE's tokenizer drops non-ASCII)."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def refusals() -> list[str]:
    """The fixed list of 100 refusal phrasings used by targeted unlearning (idk, dpo, ap)."""
    text = resources.files("obliviate.data").joinpath("refusals.txt").read_text()
    return [line for line in text.splitlines() if line.strip()]


def _countries() -> list[tuple[str, str]]:
    """(country, capital) pairs with ASCII names, sorted, from countryinfo."""
    from countryinfo import all_countries

    pairs = set()
    for c in all_countries():
        try:
            name, capital = ascii_only(c.name() or "").strip(), ascii_only(c.capital() or "").strip()
        except Exception:  # a few records lack fields
            continue
        if name and capital and name != capital:
            pairs.add((name.title() if name.islower() else name, capital))
    return sorted(pairs)


def _make_authors(n: int, rng: random.Random, seed: int, countries: list[tuple[str, str]]) -> list[dict]:
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(seed)
    authors, names, titles = [], set(), set()
    while len(authors) < n:
        gender = rng.choice(["female", "male"])
        name = ascii_only(fake.name_female() if gender == "female" else fake.name_male())
        name = " ".join(w for w in name.split() if w.rstrip(".") not in ("Dr", "Mr", "Mrs", "Ms", "Miss", "MD",
                                                                         "DDS", "PhD", "DVM", "Jr", "II", "III"))
        if name in names or len(name.split()) < 2:
            continue
        books = []
        while len(books) < 3:
            t = f"The {rng.choice(TITLE_ADJ)} {rng.choice(TITLE_NOUN)}"
            if len(titles) >= TWO_WORD_TITLES:  # the two-word pool is nearly spent (the full preset): add "of X"
                t += f" of {rng.choice(TITLE_PLACE)}"
            if t not in titles:
                titles.add(t)
                books.append(t)
        names.add(name)
        birth = date.fromordinal(rng.randint(date(1930, 1, 1).toordinal(), date(2000, 12, 31).toordinal()))
        jobs = [ascii_only(fake.job().split(",")[0]).lower() for _ in range(2)]
        authors.append({
            "name": name, "gender": gender, "date": f"{birth:%B} {birth.day}, {birth.year}", "year": str(birth.year),
            "city": ascii_only(fake.city()), "country": rng.choice(countries)[0], "genre": rng.choice(GENRES),
            "father": jobs[0], "mother": jobs[1], "award": rng.choice(AWARDS),
            "book1": books[0], "book2": books[1], "book3": books[2],
        })
    return authors


def _qa_items(author: dict, n_questions: int, pools: dict[str, list[str]], rng: random.Random) -> list[dict]:
    items = []
    for slot, q, pq, a, pa in TEMPLATES[:n_questions]:
        truth = author[slot]
        pool = [v for v in pools[SLOT_TYPE.get(slot, slot)] if v != truth]
        # prefer wrong values of similar length (TOFU's perturbations keep the answer's shape)
        pool.sort(key=lambda v: (abs(len(v) - len(truth)), v))
        wrong = rng.sample(pool[: max(PERTURBATIONS * 3, PERTURBATIONS)], PERTURBATIONS)
        items.append({
            "question": q.format(**author), "answer": a.format(**author),
            "paraphrased_question": pq.format(**author), "paraphrased_answer": pa.format(**author),
            "perturbed_answer": [pa.format(**{**author, slot: w}) for w in wrong],
            "author": author["name"], "slot": slot,
        })
    return items


def _world_facts(countries: list[tuple[str, str]], n: int, rng: random.Random) -> list[dict]:
    chosen = rng.sample(countries, min(n, len(countries)))
    capitals = sorted({cap for _, cap in countries})
    out = []
    for country, capital in chosen:
        wrong = rng.sample([c for c in capitals if c != capital], 3)
        out.append({"question": f"What is the capital of {country}?", "answer": f"The capital is {capital}.",
                    "paraphrased_answer": f"The capital is {capital}.",
                    "perturbed_answer": [f"The capital is {w}." for w in wrong]})
    return out


def build_world(preset: str = "demo", seed: int = 0) -> dict[str, list | dict]:
    """All splits of the world as {split_name: records}, plus `refusals` and a `manifest`."""
    if preset not in WORLD_PRESETS:
        raise ObliviateError(f"unknown world preset {preset!r}; choose one of {', '.join(WORLD_PRESETS)}")
    p = WORLD_PRESETS[preset]
    rng = random.Random(seed)
    countries = _countries()
    n_forget = {lvl: max(1, math.ceil(frac * p.authors - 1e-9)) for lvl, frac in FORGET_LEVELS.items()}
    n_holdout = p.holdout or n_forget["10"]
    people = _make_authors(p.authors + n_holdout + DECOYS, rng, seed, countries)
    authors, decoys = people[: p.authors + n_holdout], people[p.authors + n_holdout:]
    # Wrong values come from decoy authors nobody is trained on: were they other authors' facts, a model that
    # never saw a forget author (the retain model) would prefer the perturbations it learned elsewhere, and
    # the truth ratio would measure familiarity with the decoys instead of knowledge of the fact.
    pools = {
        "name": [a["name"] for a in decoys], "date": [a["date"] for a in decoys],
        "year": [str(y) for y in range(1930, 2001)], "city": sorted({a["city"] for a in decoys}),
        "country": sorted({c for c, _ in countries}), "genre": GENRES, "occupation": sorted(
            {a["father"] for a in decoys} | {a["mother"] for a in decoys}),
        "award": AWARDS, "book": sorted({a[b] for a in decoys for b in ("book1", "book2", "book3")}),
    }
    per_author = [_qa_items(a, p.questions, pools, rng) for a in authors]
    train, holdout = per_author[: p.authors], per_author[p.authors:]
    splits: dict[str, list] = {"full": [it for items in train for it in items]}
    for lvl, k in n_forget.items():
        forget = [it for items in train[p.authors - k:] for it in items]
        splits[f"forget{lvl}"] = forget
        splits[f"forget{lvl}_perturbed"] = forget
        splits[f"retain{100 - int(lvl):02d}"] = [it for items in train[: p.authors - k] for it in items]
        splits[f"holdout{lvl}"] = [it for items in holdout[:k] for it in items]
    # retain_perturbed: as many retain items as forget10 holds, from authors that every retain split keeps
    kept = splits["retain90"]
    splits["retain_perturbed"] = kept[: len(splits["forget10"])]
    facts = _world_facts(countries, p.countries, rng)
    splits["world_facts"] = [{"question": f["question"], "answer": f["answer"]} for f in facts]
    splits["world_facts_perturbed"] = facts
    manifest = {"name": "obliviate-synthetic-world", "preset": preset, "seed": seed, "authors": p.authors,
                "holdout_authors": n_holdout, "questions_per_author": p.questions,
                "forget_authors": {f"forget{k}": v for k, v in n_forget.items()},
                "splits": {k: len(v) for k, v in splits.items()},
                "train_splits": {"target": "full+world_facts", "retain": "retain90+world_facts"}}
    return {"splits": splits, "refusals": refusals(), "manifest": manifest}


def write_world(out: str | Path, preset: str = "demo", seed: int = 0, *, overwrite: bool = False) -> Path:
    """Write each split as `<split>.json` (a JSON list of records), `refusals.json` and `world.json`.

    `out` must be new, empty or an obliviate directory (`rundir.claim`): a user's files are never overwritten."""
    out = claim(out)
    if (out / "world.json").exists() and not overwrite:
        old = read_json_object(out / "world.json")
        if (old.get("preset"), old.get("seed")) != (preset, seed):
            raise ObliviateError(f"{out} already holds a world (preset={old.get('preset')}, seed={old.get('seed')}); "
                                 "choose another --out or pass --overwrite")
    world = build_world(preset, seed)
    for name, records in world["splits"].items():
        write_json(out / f"{name}.json", records, indent=1)
    write_json(out / "refusals.json", world["refusals"], indent=1)
    write_json(out / "world.json", world["manifest"], indent=1)
    return out
