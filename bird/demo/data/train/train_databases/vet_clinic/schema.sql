-- A veterinary practice: pet owners, their animals, the vets, visits and the treatments
-- given at each visit.
CREATE TABLE owner (
    owner_id INTEGER PRIMARY KEY,
    first_name TEXT,
    last_name TEXT NOT NULL,
    city TEXT,
    phone TEXT,
    registered_on TEXT
);

CREATE TABLE pet (
    pet_id INTEGER PRIMARY KEY,
    owner_id INTEGER NOT NULL REFERENCES owner (owner_id),
    pet_name TEXT NOT NULL,
    species TEXT NOT NULL,
    breed TEXT,
    sex TEXT,
    birth_date TEXT,
    neutered INTEGER
);

CREATE TABLE vet (
    vet_id INTEGER PRIMARY KEY,
    first_name TEXT,
    last_name TEXT NOT NULL,
    specialty TEXT,
    hire_date TEXT
);

CREATE TABLE visit (
    visit_id INTEGER PRIMARY KEY,
    pet_id INTEGER NOT NULL REFERENCES pet (pet_id),
    vet_id INTEGER NOT NULL REFERENCES vet (vet_id),
    visit_date TEXT NOT NULL,
    reason_code TEXT,
    weight_kg REAL,
    payment_method TEXT
);

CREATE TABLE treatment (
    treatment_id INTEGER PRIMARY KEY,
    treatment_name TEXT NOT NULL,
    category TEXT,
    unit_price REAL
);

CREATE TABLE visit_treatment (
    visit_id INTEGER NOT NULL REFERENCES visit (visit_id),
    treatment_id INTEGER NOT NULL REFERENCES treatment (treatment_id),
    quantity INTEGER NOT NULL,
    PRIMARY KEY (visit_id, treatment_id)
);
