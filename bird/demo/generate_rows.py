"""Write the demo databases' rows as CSV text: the authoring tool, not part of the build.

The shipped rows under `data/<split>/<split>_databases/<db>/rows/` are what this script
writes, and the build reads only those files, so a database never depends on a random
generator at build time. Re-run it after changing a generator here, then check every gold
query and seed again (their answers follow the rows):

    python -m bird.demo.generate_rows            # rewrites the shipped rows
    python -m bird.demo.generate_rows --out DIR  # writes the same tree under DIR

Each database has its own `random.Random` with a fixed seed, so editing one database's
generator leaves the other databases' rows unchanged. The values are invented: names come
from short word lists, dates from fixed windows, and the messiness is deliberate (NULLs
where a value was not recorded, codes explained in the value descriptions, dates as text).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import random
import sqlite3
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"

Row = tuple[object, ...] | list[object]
Tables = dict[str, list[Row]]  # table -> rows, values in the column order of schema.sql

FIRST_NAMES = (
    "Ada Alan Alice Amara Anders Anya Arjun Beatriz Bruno Camila Carlos Chen Chloe Dario "
    "Divya Elena Elif Emeka Emil Farah Felix Freya Gabriel Grace Hana Hugo Ibrahim Ines "
    "Ivan Jonas Julia Kai Kenji Lara Leon Lucia Mara Marco Maya Mei Milan Nadia Nikolai "
    "Noah Nora Olga Omar Oscar Paula Priya Rafael Rosa Samir Sara Sofia Tariq Theo Uma "
    "Vera Viktor Wen Yara Yusuf Zoe"
).split()
LAST_NAMES = (
    "Abbott Achebe Alvarez Andersen Bauer Becker Brennan Castillo Chandra Costa Dahl "
    "Delacroix Dubois Eriksen Ferreira Fischer Fontaine Garcia Haddad Hansen Ibarra Ito "
    "Jansen Kaur Keller Kowalski Larsen Lindqvist Lopez Marsh Martins Mendes Moreau "
    "Nakamura Novak Okafor Olsen Ortiz Park Patel Petrov Quinn Reyes Rossi Santos Sato "
    "Schmidt Silva Sorensen Tanaka Torres Ueda Varga Vogel Walsh Weber Yilmaz Zhang"
).split()


def _day(text: str) -> date:
    return date.fromisoformat(text)


def _random_day(rng: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rng.randint(0, (last - first).days))


def _years_after(day: date, years: int) -> date:
    return day.replace(year=day.year + years, day=min(day.day, 28))


def _person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def _maybe(rng: random.Random, probability_null: float, value: object) -> object:
    """`value`, or None (not recorded) with the given probability."""
    return None if rng.random() < probability_null else value


def _money(value: float) -> float:
    return round(value + 1e-9, 2)


# --- city_library (train) ------------------------------------------------------------

_ADJECTIVES = (
    "Silent Hidden Crimson Winter Quiet Broken Golden Distant Paper Salt Iron Hollow Last "
    "Northern Patient Restless Secret Sunken Velvet Wild Glass Lantern Amber Borrowed"
).split()
_NOUNS = (
    "Harbor Orchard Garden Lighthouse Archive River Kingdom Compass Ferryman Island Mountain "
    "Clockmaker Cartographer Bridge Forest Station Tide Museum Observatory Meadow Harvest "
    "Voyage Engine Ledger Atlas"
).split()
_TOPICS = (
    "Rivers Bees Glaciers Markets Bridges Stars Maps Forests Clocks Bicycles Islands "
    "Volcanoes Languages Birds Numbers Whales"
).split()
_DISHES = "Bread Spices Tea Ferments Noodles Soups Citrus Mushrooms Beans Chocolate".split()
_GENRES = {
    "Fiction": 18,
    "Mystery": 14,
    "Science Fiction": 9,
    "Fantasy": 9,
    "Biography": 7,
    "History": 9,
    "Science": 8,
    "Poetry": 4,
    "Children": 14,
    "Cooking": 8,
}
_COUNTRIES = (
    "United_Kingdom United_States Canada France Nigeria India Japan Brazil Germany Spain "
    "Ireland Mexico Sweden Italy Kenya"
).split()


def _title(rng: random.Random, genre: str) -> str:
    noun, adjective = rng.choice(_NOUNS), rng.choice(_ADJECTIVES)
    article = "An" if noun[0] in "AEIOU" else "A"
    if genre in ("History", "Science"):
        topic = rng.choice(_TOPICS)
        return rng.choice(
            (f"A Short History of {topic}", f"The Science of {topic}", f"{topic}: A Field Guide")
        )
    if genre == "Cooking":
        dish = rng.choice(_DISHES)
        return rng.choice((f"Cooking with {dish}", f"The {adjective} Kitchen", f"{dish} at Home"))
    if genre == "Biography":
        first, last = _person(rng)
        return rng.choice((f"{first} {last}: A Life", f"The Life of {first} {last}"))
    if genre == "Children":
        return rng.choice((f"The Little {noun}", f"Goodnight, {noun}", f"Pip and the {noun}"))
    return rng.choice(
        (f"The {adjective} {noun}", f"{noun} of the {adjective} Sea", f"{article} {noun} in Winter")
    )


def _isbn13(rng: random.Random) -> str:
    digits = [9, 7, 8] + [rng.randint(0, 9) for _ in range(9)]
    check = (10 - sum(d * (1 if i % 2 == 0 else 3) for i, d in enumerate(digits)) % 10) % 10
    return "".join(map(str, digits)) + str(check)


def city_library() -> Tables:
    rng = random.Random(1101)
    branches = [
        (1, "Central Library", "Old Town", "1962-09-15", "Y", 72),
        (2, "Riverside Branch", "Riverside", "1988-04-02", "N", 48),
        (3, "Northgate Branch", "Northgate", "1995-11-20", "Y", 54),
        (4, "Elm Park Branch", "Elm Park", "2003-06-07", "N", 40),
        (5, "Harbor View Branch", "Harborside", "2011-03-12", "Y", 56),
        (6, "Westfield Branch", "Westfield", "2019-10-05", "N", 36),
    ]
    authors = []
    for author_id in range(1, 71):
        first, last = _person(rng)
        authors.append(
            (
                author_id,
                _maybe(rng, 0.04, first),
                last,
                _maybe(rng, 0.12, rng.randint(1905, 1992)),
                rng.choice(_COUNTRIES).replace("_", " "),
            )
        )
    prolific = [rng.randint(1, 70) for _ in range(12)]
    books, titles = [], set()
    genres, weights = list(_GENRES), list(_GENRES.values())
    while len(books) < 230:
        genre = rng.choices(genres, weights)[0]
        title = _title(rng, genre)
        if title in titles:
            continue
        titles.add(title)
        author_id = rng.choice(prolific) if rng.random() < 0.35 else rng.randint(1, 70)
        pages_range = (24, 64) if genre == "Children" else (90, 880)
        books.append(
            (
                len(books) + 1,
                title,
                author_id,
                genre,
                rng.randint(1950, 2023),
                _maybe(rng, 0.06, rng.randint(*pages_range)),
                rng.choices(["en", "fr", "es", "de", "it"], [76, 8, 8, 5, 3])[0],
                _isbn13(rng),
            )
        )
    copies = []
    for book in books:
        for _ in range(rng.choices([1, 2, 3, 4], [35, 35, 20, 10])[0]):
            earliest = max(_day(f"{book[4]}-01-01"), _day("2005-01-01"))
            copies.append(
                (
                    len(copies) + 1,
                    book[0],
                    rng.choices([1, 2, 3, 4, 5, 6], [30, 15, 18, 12, 15, 10])[0],
                    _maybe(rng, 0.03, _random_day(rng, earliest, _day("2023-06-30")).isoformat()),
                    rng.choices(["N", "G", "W", "D"], [20, 50, 24, 6])[0],
                    _money(rng.uniform(7.5, 45.0)),
                )
            )
    members = []
    for member_id in range(1, 271):
        first, last = _person(rng)
        membership = rng.choices(["A", "S", "C", "R"], [52, 20, 14, 14])[0]
        age = {"A": (26, 64), "S": (17, 25), "C": (6, 15), "R": (65, 88)}[membership]
        born = _random_day(rng, _day(f"{2023 - age[1]}-01-01"), _day(f"{2023 - age[0]}-12-31"))
        email = f"{first}.{last}{member_id}@example.org".lower()
        members.append(
            (
                member_id,
                first,
                last,
                _maybe(rng, 0.08, born.isoformat()),
                _random_day(
                    rng, max(_day("2014-01-01"), _years_after(born, 5)), _day("2023-10-31")
                ).isoformat(),
                membership,
                rng.choices([1, 2, 3, 4, 5, 6], [28, 16, 18, 13, 15, 10])[0],
                _maybe(rng, 0.22 if membership in ("C", "R") else 0.1, email),
            )
        )
    loans = []
    window_end = _day("2023-12-31")
    while len(loans) < 1350:
        copy = rng.choice(copies)
        member = rng.choice(members)
        acquired = _day(copy[3]) if copy[3] else _day("2005-01-01")
        first = max(acquired, _day(member[4]), _day("2021-01-01"))
        if first > window_end or (copy[4] == "D" and rng.random() < 0.7):
            continue
        loaned = _random_day(rng, first, window_end)
        due = loaned + timedelta(days=21)
        kept = rng.choices([rng.randint(2, 20), rng.randint(21, 60)], [80, 20])[0]
        returned = loaned + timedelta(days=kept)
        if returned > _day("2024-01-10") or rng.random() < 0.015:
            returned = None
        days_late = (returned - due).days if returned else 0
        fine = _money(min(days_late * 0.25, 10.0)) if days_late > 0 else None
        loans.append(
            (
                len(loans) + 1,
                copy[0],
                member[0],
                loaned.isoformat(),
                due.isoformat(),
                returned.isoformat() if returned else None,
                fine,
            )
        )
    loans.sort(key=lambda loan: (loan[3], loan[0]))
    loans = [(number, *loan[1:]) for number, loan in enumerate(loans, start=1)]
    return {
        "branch": branches,
        "author": authors,
        "book": books,
        "copy": copies,
        "member": members,
        "loan": loans,
    }


# --- bike_share (train) --------------------------------------------------------------

_STREETS = (
    "Maple Cedar Harbor Mill Union Spring Market Chestnut Canal Orchard Foundry Lake Garden "
    "Elm Bridge Park Station Willow"
).split()
_NEIGHBORHOODS = {
    "Downtown": (4.0, 12.0),
    "Harborside": (1.0, 6.0),
    "University Hill": (38.0, 61.0),
    "Old Mill": (12.0, 25.0),
    "Eastbank": (3.0, 10.0),
    "Greenway": (18.0, 34.0),
}
_BIKE_MODELS = {
    "Urbano 3": "classic",
    "Urbano 4": "classic",
    "Volt E2": "electric",
    "Volt E3": "electric",
    "Hauler C1": "cargo",
}
_ZIPS = "40101 40102 40103 40107 40110 40115 40122 40130".split()


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def bike_share() -> Tables:
    rng = random.Random(2202)
    stations, names = [], set()
    hoods = list(_NEIGHBORHOODS)
    while len(stations) < 36:
        first, second = rng.sample(_STREETS, 2)
        name = (
            f"{first} St & {second} Ave"
            if rng.random() < 0.8
            else f"{first} {rng.choice(['Square', 'Plaza', 'Pier', 'Market Hall'])}"
        )
        if name in names:
            continue
        names.add(name)
        hood = hoods[len(stations) % len(hoods)] if len(stations) < 12 else rng.choice(hoods)
        low, high = _NEIGHBORHOODS[hood]
        stations.append(
            (
                len(stations) + 1,
                name,
                hood,
                rng.choice(range(11, 40, 2)),
                _random_day(rng, _day("2016-05-01"), _day("2022-09-30")).isoformat(),
                _maybe(rng, 0.08, round(rng.uniform(low, high), 1)),
            )
        )
    bikes = []
    models, model_weights = list(_BIKE_MODELS), [30, 25, 20, 17, 8]
    for bike_id in range(1, 151):
        model = rng.choices(models, model_weights)[0]
        status = rng.choices(["A", "M", "R"], [82, 9, 9])[0]
        bikes.append(
            (
                bike_id,
                model,
                _BIKE_MODELS[model],
                _random_day(rng, _day("2018-03-01"), _day("2023-03-31")).isoformat(),
                status,
            )
        )
    riders = []
    for rider_id in range(1, 331):
        user_type = rng.choices(["Subscriber", "Customer"], [68, 32])[0]
        riders.append(
            (
                rider_id,
                user_type,
                _maybe(rng, 0.1, rng.randint(1948, 2006)),
                _maybe(rng, 0.09, rng.choices(["M", "F", "O"], [49, 47, 4])[0]),
                _random_day(rng, _day("2019-01-01"), _day("2023-09-15")).isoformat(),
                _maybe(rng, 0.05, rng.choice(_ZIPS)),
            )
        )
    weather, rainy = [], set()
    day = _day("2023-04-01")
    while day <= _day("2023-09-30"):
        season = math.sin((day.timetuple().tm_yday - 100) / 365 * 2 * math.pi)
        high = round(17 + 11 * season + rng.uniform(-4, 4), 1)
        low = round(high - rng.uniform(6, 12), 1)
        wet = rng.random() < 0.27
        rain = round(rng.uniform(0.3, 28.0), 1) if wet else 0.0
        events = None
        if wet:
            events = "Thunderstorm" if rain > 18 and high > 24 else "Rain"
            rainy.add(day.isoformat())
        elif rng.random() < 0.06:
            events = "Fog"
        weather.append((day.isoformat(), high, low, rain, round(rng.uniform(4, 38), 1), events))
        day += timedelta(days=1)
    usable = [bike for bike in bikes if bike[4] != "R" or rng.random() < 0.5]
    trips = []
    hub_stations = [1, 2, 5, 7, 11]
    heavy_riders = rng.sample(range(1, 331), 40)
    hours = list(range(6, 23))
    hour_weights = [3, 8, 14, 9, 5, 5, 7, 7, 6, 6, 9, 14, 12, 8, 5, 3, 2]
    while len(trips) < 2150:
        started_day = _random_day(rng, _day("2023-04-01"), _day("2023-09-30"))
        if started_day.isoformat() in rainy and rng.random() < 0.55:
            continue
        rider = riders[
            (rng.choice(heavy_riders) if rng.random() < 0.4 else rng.randint(1, 330)) - 1
        ]
        if _day(rider[4]) > started_day:
            continue
        bike = rng.choice(usable)
        if _day(bike[3]) > started_day:
            continue
        start = datetime.combine(started_day, datetime.min.time()) + timedelta(
            hours=rng.choices(hours, hour_weights)[0],
            minutes=rng.randint(0, 59),
            seconds=rng.randint(0, 59),
        )
        minutes = min(max(rng.lognormvariate(2.6, 0.6), 2.0), 150.0)
        if rider[1] == "Customer":
            minutes = min(minutes * 1.6, 180.0)
        duration = int(minutes * 60) + rng.randint(0, 59)
        start_station = rng.choice(hub_stations) if rng.random() < 0.3 else rng.randint(1, 36)
        end_station = rng.choice(hub_stations) if rng.random() < 0.3 else rng.randint(1, 36)
        docked = rng.random() > 0.025
        per_minute = 0.15 if bike[2] == "classic" else 0.25
        if rider[1] == "Subscriber":
            fare = max(0.0, duration / 60 - 45) * per_minute
        else:
            fare = 3.5 + duration / 60 * per_minute
        trips.append(
            (
                0,
                bike[0],
                rider[0],
                start_station,
                end_station if docked else None,
                _timestamp(start),
                _timestamp(start + timedelta(seconds=duration)) if docked else None,
                duration if docked else None,
                _money(fare) if docked else None,
            )
        )
    trips.sort(key=lambda trip: (trip[5], trip[1]))
    trips = [(number, *trip[1:]) for number, trip in enumerate(trips, start=1)]
    return {
        "station": stations,
        "bike": bikes,
        "rider": riders,
        "trip": trips,
        "weather": weather,
    }


# --- vet_clinic (train) --------------------------------------------------------------

_PET_NAMES = (
    "Biscuit Luna Milo Pepper Olive Rocky Daisy Ziggy Mochi Juniper Clover Rufus Willow "
    "Hazel Nugget Pixel Maple Otis Poppy Scout Basil Tofu Koda Nala Bean Sunny Echo Fig "
    "Marble Ginger Pickle Thor Bramble Kiwi Waffles Indigo Pesto Sprout Comet Noodle"
).split()
_SPECIES = {
    "dog": (
        44,
        "Labrador Retriever|Border Collie|Beagle|Dachshund|German Shepherd|Cocker Spaniel|"
        "Greyhound|Poodle",
        (4.0, 42.0),
    ),
    "cat": (36, "Siamese|Maine Coon|British Shorthair|Persian|Bengal|Ragdoll", (2.5, 7.5)),
    "rabbit": (8, "Holland Lop|Rex|Lionhead|Flemish Giant", (1.2, 6.5)),
    "bird": (6, "Budgerigar|Cockatiel|African Grey|Canary", (0.03, 0.5)),
    "reptile": (6, "Bearded Dragon|Leopard Gecko|Corn Snake|Hermann's Tortoise", (0.05, 2.5)),
}
_TOWNS = ("Ashford", "Brookmere", "Calder", "Dunmore", "Eastwick")
_TREATMENTS = [
    ("Rabies vaccine", "Vaccine", 38.0),
    ("Distemper combo vaccine", "Vaccine", 42.5),
    ("Feline leukemia vaccine", "Vaccine", 40.0),
    ("Myxomatosis vaccine", "Vaccine", 35.0),
    ("Kennel cough vaccine", "Vaccine", 29.0),
    ("Annual wellness exam", "Diagnostic", 55.0),
    ("Blood panel", "Diagnostic", 89.0),
    ("X-ray", "Diagnostic", 120.0),
    ("Ultrasound", "Diagnostic", 165.0),
    ("Urinalysis", "Diagnostic", 48.0),
    ("Skin scraping", "Diagnostic", 44.0),
    ("Fecal test", "Diagnostic", 32.0),
    ("Amoxicillin course", "Medication", 24.0),
    ("Pain relief (meloxicam)", "Medication", 19.5),
    ("Flea and tick treatment", "Medication", 27.0),
    ("Deworming tablet", "Medication", 12.0),
    ("Antifungal cream", "Medication", 16.5),
    ("Ear drops", "Medication", 14.0),
    ("Dental cleaning", "Procedure", 210.0),
    ("Tooth extraction", "Procedure", 145.0),
    ("Spay or neuter surgery", "Procedure", 320.0),
    ("Wound suturing", "Procedure", 135.0),
    ("Mass removal", "Procedure", 410.0),
    ("Fracture repair", "Procedure", 890.0),
    ("IV fluids", "Procedure", 95.0),
    ("Nail and beak trim", "Procedure", 18.0),
    ("Microchipping", "Procedure", 45.0),
    ("Allergy injection", "Medication", 58.0),
    ("Anesthesia", "Procedure", 150.0),
    ("Hospital stay (per night)", "Procedure", 85.0),
]
# reason code -> (weight, treatments that visit draws from)
_REASONS = {
    "CHK": (34, [6, 7, 10, 12, 15, 16, 27]),
    "VAC": (24, [1, 2, 3, 4, 5, 6]),
    "EMG": (13, [8, 9, 13, 14, 22, 25, 30]),
    "SUR": (9, [21, 23, 24, 29, 14, 30]),
    "DEN": (10, [19, 20, 29, 14]),
    "DER": (10, [11, 17, 18, 15, 28, 13]),
}


def vet_clinic() -> Tables:
    rng = random.Random(3303)
    owners = []
    for owner_id in range(1, 166):
        first, last = _person(rng)
        phone = f"555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
        owners.append(
            (
                owner_id,
                first,
                last,
                rng.choices(_TOWNS, [35, 25, 18, 12, 10])[0],
                _maybe(rng, 0.14, phone),
                _random_day(rng, _day("2012-01-01"), _day("2023-06-30")).isoformat(),
            )
        )
    pets, base_weight = [], {}
    species_names = list(_SPECIES)
    species_weights = [_SPECIES[name][0] for name in species_names]
    for pet_id in range(1, 271):
        owner = owners[(pet_id - 1) % 165 if pet_id <= 165 else rng.randint(0, 164)]
        species = rng.choices(species_names, species_weights)[0]
        breed = rng.choice(_SPECIES[species][1].split("|"))
        born = _random_day(rng, _day("2006-01-01"), _day("2023-03-31"))
        base_weight[pet_id] = rng.uniform(*_SPECIES[species][2])
        pets.append(
            (
                pet_id,
                owner[0],
                rng.choice(_PET_NAMES),
                species,
                _maybe(rng, 0.16 if species in ("dog", "cat") else 0.05, breed),
                rng.choice(["M", "F"]),
                _maybe(rng, 0.1, born.isoformat()),
                int(species in ("dog", "cat", "rabbit") and rng.random() < 0.72),
            )
        )
    vets = [
        (1, "Helena", "Marsh", "General Practice", "2009-02-16"),
        (2, "Tomasz", "Novak", "Surgery", "2012-08-01"),
        (3, "Aiko", "Sato", "Dentistry", "2015-05-11"),
        (4, "Rafael", "Ortiz", "Exotics", "2016-09-19"),
        (5, "Grace", "Okafor", "General Practice", "2018-01-08"),
        (6, "Lena", "Vogel", "Dermatology", "2019-04-23"),
        (7, "Samir", "Haddad", "General Practice", "2020-11-02"),
        (8, "Ines", "Costa", "Surgery", "2022-03-14"),
    ]
    by_specialty: dict[str, list[int]] = {}
    for vet in vets:
        by_specialty.setdefault(vet[3], []).append(vet[0])
    visits, visit_treatments = [], []
    reasons, reason_weights = list(_REASONS), [_REASONS[code][0] for code in _REASONS]
    while len(visits) < 960:
        pet = rng.choice(pets)
        reason = rng.choices(reasons, reason_weights)[0]
        first = max(_day("2020-01-01"), _day(pet[6]) if pet[6] else _day("2020-01-01"))
        when = _random_day(rng, first, _day("2023-12-31"))
        specialty = {"SUR": "Surgery", "DEN": "Dentistry", "DER": "Dermatology"}.get(
            reason, "Exotics" if pet[3] in ("rabbit", "bird", "reptile") else "General Practice"
        )
        hired = [vet_id for vet_id in by_specialty[specialty] if _day(vets[vet_id - 1][4]) <= when]
        if not hired or (reason == "DER" and rng.random() < 0.3):
            hired = [v for v in by_specialty["General Practice"] if _day(vets[v - 1][4]) <= when]
        weight = round(base_weight[pet[0]] * rng.uniform(0.94, 1.06), 2)
        vet_id = rng.choice(hired)
        weighed = _maybe(rng, 0.1, weight)
        payment = rng.choices(["CARD", "CASH", "INS"], [60, 12, 28])[0]
        visits.append([0, pet[0], vet_id, when.isoformat(), reason, weighed, payment])
    visits.sort(key=lambda visit: (visit[3], visit[1]))
    for number, visit in enumerate(visits, start=1):
        visit[0] = number
        pool = _REASONS[visit[4]][1]
        pet_species = pets[visit[1] - 1][3]
        if visit[4] == "VAC":
            pool = {"dog": [1, 2, 5], "cat": [1, 3], "rabbit": [4]}.get(pet_species, [6])
        if pet_species in ("bird", "reptile") and visit[4] == "CHK":
            pool = [6, 12, 26]
        chosen = rng.sample(pool, min(len(pool), rng.choices([1, 2, 3], [45, 38, 17])[0]))
        for treatment_id in sorted(chosen):
            category = _TREATMENTS[treatment_id - 1][1]
            quantity = rng.choice([1, 1, 2, 3]) if treatment_id in (13, 14, 16, 30) else 1
            if category == "Vaccine":
                quantity = 1
            visit_treatments.append((number, treatment_id, quantity))
    treatments = [(number, *row) for number, row in enumerate(_TREATMENTS, start=1)]
    return {
        "owner": owners,
        "pet": pets,
        "vet": vets,
        "visit": visits,
        "treatment": treatments,
        "visit_treatment": visit_treatments,
    }


# --- ferry_line (dev) ----------------------------------------------------------------


def ferry_line() -> Tables:
    rng = random.Random(4404)
    ports = [
        (1, "Kestrel Quay", "Mainland", 1921),
        (2, "Port Alder", "Alder Island", 1934),
        (3, "Gullhaven", "Gull Island", 1952),
        (4, "Saltmarsh Pier", "Mainland", 1978),
        (5, "Tern Point", "Alder Island", 1989),
        (6, "Little Skerry", "Skerry", 2001),
        (7, "Brackwater", "Gull Island", 1967),
        (8, "Northreach", "Mainland", 2015),
    ]
    vessels = [
        (1, "MV Cormorant", 1994, 420, 60, "D"),
        (2, "MV Guillemot", 2001, 380, 48, "D"),
        (3, "Skerry Dart", 2012, 150, None, "D"),
        (4, "MV Puffin", 2016, 520, 72, "H"),
        (5, "Tern Express", 2019, 180, None, "H"),
        (6, "Eider", 2022, 300, 30, "E"),
        (7, "MV Petrel", 1988, 340, 40, "D"),
    ]
    routes = [
        (1, "R01", 1, 2, 7.5, 9.5, "N"),
        (2, "R02", 2, 1, 7.5, 9.5, "N"),
        (3, "R03", 1, 3, 12.0, 14.0, "N"),
        (4, "R04", 3, 1, 12.0, 14.0, "N"),
        (5, "R05", 4, 5, 5.2, 7.0, "N"),
        (6, "R06", 5, 4, 5.2, 7.0, "N"),
        (7, "R07", 2, 6, 9.8, 12.5, "Y"),
        (8, "R08", 6, 2, 9.8, 12.5, "Y"),
        (9, "R09", 8, 7, 15.4, 18.0, "Y"),
        (10, "R10", 7, 8, 15.4, 18.0, "Y"),
        (11, "R11", 3, 7, 3.1, 4.5, "N"),
        (12, "R12", 7, 3, 3.1, 4.5, "N"),
    ]
    fleet = {1: [1, 7], 2: [1, 7], 3: [4, 2], 4: [4, 2], 5: [6], 6: [6], 7: [3, 5]}
    fleet |= {8: [3, 5], 9: [5, 3], 10: [5, 3], 11: [6, 2], 12: [6, 2]}
    times = {1: ["07:15", "12:30", "18:00"], 2: ["08:45", "14:00", "19:30"], 3: ["09:00", "16:00"]}
    times |= {4: ["11:00", "18:15"], 5: ["06:50", "13:10", "17:40"], 6: ["07:40", "14:05"]}
    times |= {7: ["10:20"], 8: ["15:45"], 9: ["08:10"], 10: ["17:25"], 11: ["12:00"]}
    times |= {12: ["12:45"]}
    sailings = []
    day = _day("2024-06-01")
    while day <= _day("2024-08-31"):
        for route in routes:
            if route[6] == "Y" and day.weekday() not in (4, 5, 6):
                continue
            for departure in times[route[0]]:
                if rng.random() < 0.62:
                    continue
                status = rng.choices(["OT", "DL", "CX"], [78, 17, 5])[0]
                delay = rng.choice([5, 10, 15, 20, 25, 30, 45, 60, 90]) if status == "DL" else None
                sailings.append(
                    (
                        len(sailings) + 1,
                        route[0],
                        rng.choice(fleet[route[0]]),
                        day.isoformat(),
                        departure,
                        status,
                        delay,
                    )
                )
        day += timedelta(days=1)
    tickets = []
    route_fare = {route[0]: route[5] for route in routes}
    multiplier = {"ADT": 1.0, "CHD": 0.5, "SNR": 0.7, "RES": 0.4}
    for sailing in sailings:
        vessel = vessels[sailing[2] - 1]
        for _ in range(rng.randint(0, 8) if sailing[5] != "CX" else rng.randint(0, 2)):
            passenger = rng.choices(list(multiplier), [55, 15, 14, 16])[0]
            vehicle = int(vessel[4] is not None and passenger != "CHD" and rng.random() < 0.22)
            price = route_fare[sailing[1]] * multiplier[passenger] + (24.0 if vehicle else 0.0)
            bought = _day(sailing[3]) - timedelta(days=rng.choice([0, 0, 1, 2, 5, 9, 14, 30]))
            channel = rng.choices(["web", "kiosk", "onboard"], [58, 27, 15])[0]
            if channel == "onboard":
                bought = _day(sailing[3])
            tickets.append(
                (
                    len(tickets) + 1,
                    sailing[0],
                    passenger,
                    vehicle,
                    _money(price),
                    channel,
                    bought.isoformat(),
                )
            )
    return {
        "port": ports,
        "vessel": vessels,
        "route": routes,
        "sailing": sailings,
        "ticket": tickets,
    }


# --- high_school (dev) ---------------------------------------------------------------

_DEPARTMENTS = {
    "Mathematics": ["Algebra I", "Geometry", "Algebra II", "Statistics", "Calculus"],
    "Science": ["Biology", "Chemistry", "Physics", "Environmental Science"],
    "English": ["English 9", "English 10", "American Literature", "Creative Writing"],
    "History": ["World History", "US History", "Economics", "Government"],
    "Languages": ["Spanish I", "Spanish II", "French I", "Mandarin I"],
    "Arts": ["Studio Art", "Choir", "Theater", "Photography"],
    "Computer Science": ["Intro to Programming", "Web Design", "Data Structures"],
}
_HALF_CREDIT = ("Choir", "Theater", "Photography", "Web Design")
_VISITING = ("Mandarin I",)  # taught by a visiting instructor who is not on the staff list
_ABSENCE_REASONS = ("Illness", "Medical appointment", "Family", "Sports event", "Travel")


def _letter(score: float) -> str:
    return next(grade for floor, grade in _GRADE_FLOORS if score >= floor)


_GRADE_FLOORS = ((90, "A"), (80, "B"), (70, "C"), (60, "D"), (0, "F"))


def high_school() -> Tables:
    rng = random.Random(5505)
    teachers = []
    for department in _DEPARTMENTS:
        for _ in range(3 if department in ("Mathematics", "Science", "English") else 2):
            first, last = _person(rng)
            teachers.append(
                (
                    len(teachers) + 1,
                    first,
                    last,
                    department,
                    _random_day(rng, _day("1998-08-15"), _day("2023-08-15")).isoformat(),
                    int(rng.random() < 0.8),
                )
            )
    students = []
    for student_id in range(1, 221):
        first, last = _person(rng)
        grade = rng.choice([9, 10, 11, 12])
        born = _random_day(
            rng, _day(f"{2023 - grade - 6}-09-01"), _day(f"{2023 - grade - 5}-08-31")
        )
        students.append(
            (
                student_id,
                first,
                last,
                born.isoformat(),
                grade,
                rng.choices(["F", "M", "X"], [49, 49, 2])[0],
                rng.choices(["F", "R", "P"], [28, 12, 60])[0],
                _maybe(rng, 0.12, f"{first[0]}{last}{student_id}@school.example".lower()),
            )
        )
    courses = []
    for department, titles in _DEPARTMENTS.items():
        staff = [teacher for teacher in teachers if teacher[3] == department]
        for number, title in enumerate(titles, start=1):
            prefix = "".join(word[0] for word in department.split()).upper()
            prefix = prefix if len(prefix) > 1 else department[:3].upper()
            courses.append(
                (
                    len(courses) + 1,
                    f"{prefix}{100 * number + rng.randint(1, 9)}",
                    title,
                    department,
                    0.5 if title in _HALF_CREDIT else 1.0,
                    None if title in _VISITING else staff[(number - 1) % len(staff)][0],
                )
            )
    aptitude = {student[0]: rng.gauss(78, 9) for student in students}
    enrollments = []
    for term in ("2023-FA", "2024-SP"):
        for student in students:
            for course in rng.sample(courses, rng.randint(2, 4)):
                score = min(100.0, max(35.0, aptitude[student[0]] + rng.gauss(0, 8)))
                withdrawn = rng.random() < 0.04
                score = None if withdrawn else round(score, 1)
                enrollments.append(
                    (
                        len(enrollments) + 1,
                        student[0],
                        course[0],
                        term,
                        score,
                        None if score is None else _letter(score),
                    )
                )
    absences = []
    frequent = set(rng.sample(range(1, 221), 25))
    for student in students:
        count = rng.randint(3, 12) if student[0] in frequent else rng.choice([0, 0, 1, 1, 2, 3])
        for _ in range(count):
            when = _random_day(rng, _day("2023-09-05"), _day("2024-06-14"))
            while when.weekday() > 4:  # school days only
                when = _random_day(rng, _day("2023-09-05"), _day("2024-06-14"))
            excused = rng.choices(["Y", "N"], [62, 38])[0]
            absences.append(
                [
                    0,
                    student[0],
                    when.isoformat(),
                    rng.randint(1, 7),
                    excused,
                    rng.choice(_ABSENCE_REASONS) if excused == "Y" else None,
                ]
            )
    absences.sort(key=lambda absence: (absence[2], absence[1], absence[3]))
    for number, absence in enumerate(absences, start=1):
        absence[0] = number
    return {
        "teacher": teachers,
        "student": students,
        "course": courses,
        "enrollment": enrollments,
        "absence": absences,
    }


GENERATORS: dict[str, tuple[str, Callable[[], Tables]]] = {  # db_id -> (split, generator)
    "city_library": ("train", city_library),
    "bike_share": ("train", bike_share),
    "vet_clinic": ("train", vet_clinic),
    "ferry_line": ("dev", ferry_line),
    "high_school": ("dev", high_school),
}


def csv_text(columns: Sequence[str], rows: Sequence[Row]) -> str:
    """CSV with a header; NULL is an empty field (no demo text value is empty)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"row {row!r} has {len(row)} values for {len(columns)} columns")
        writer.writerow(["" if value is None else value for value in row])
    return buffer.getvalue()


def schema_columns(schema_path: Path) -> dict[str, list[str]]:
    """Table -> column names, in the order `schema.sql` declares them."""
    connection = sqlite3.connect(":memory:")
    try:
        connection.executescript(schema_path.read_text(encoding="utf-8"))
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        return {
            table: [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
            for table in tables
        }
    finally:
        connection.close()


def write_rows(out_dir: Path = DATA_DIR) -> list[Path]:
    """Write every database's rows under `out_dir`, in the shipped layout, one CSV per
    table with the header `schema.sql` gives (the shipped schema, wherever `out_dir` is)."""
    written = []
    for db_id, (split, generate) in GENERATORS.items():
        db_dir = Path(split) / f"{split}_databases" / db_id
        columns = schema_columns(DATA_DIR / db_dir / "schema.sql")
        tables = generate()
        if set(tables) != set(columns):
            raise ValueError(f"{db_id}: generated tables {sorted(tables)} != {sorted(columns)}")
        rows_dir = out_dir / db_dir / "rows"
        rows_dir.mkdir(parents=True, exist_ok=True)
        for table, rows in tables.items():
            path = rows_dir / f"{table}.csv"
            path.write_text(csv_text(columns[table], rows), encoding="utf-8", newline="")
            written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="data folder to write into")
    args = parser.parse_args(argv)
    for path in write_rows(args.out):
        print(path)


if __name__ == "__main__":
    main()
