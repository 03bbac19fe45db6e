-- A city's public library network: branches, the catalogue, physical copies, members
-- and three years of loans.
CREATE TABLE branch (
    branch_id INTEGER PRIMARY KEY,
    branch_name TEXT NOT NULL,
    district TEXT NOT NULL,
    opened_date TEXT,
    has_makerspace TEXT,
    weekly_hours INTEGER
);

CREATE TABLE author (
    author_id INTEGER PRIMARY KEY,
    first_name TEXT,
    last_name TEXT NOT NULL,
    birth_year INTEGER,
    country TEXT
);

CREATE TABLE book (
    book_id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    author_id INTEGER REFERENCES author (author_id),
    genre TEXT,
    publication_year INTEGER,
    pages INTEGER,
    language TEXT,
    isbn TEXT
);

CREATE TABLE copy (
    copy_id INTEGER PRIMARY KEY,
    book_id INTEGER NOT NULL REFERENCES book (book_id),
    branch_id INTEGER NOT NULL REFERENCES branch (branch_id),
    acquired_date TEXT,
    condition TEXT,
    price REAL
);

CREATE TABLE member (
    member_id INTEGER PRIMARY KEY,
    first_name TEXT,
    last_name TEXT,
    birth_date TEXT,
    join_date TEXT,
    membership_type TEXT,
    home_branch_id INTEGER REFERENCES branch (branch_id),
    email TEXT
);

CREATE TABLE loan (
    loan_id INTEGER PRIMARY KEY,
    copy_id INTEGER NOT NULL REFERENCES copy (copy_id),
    member_id INTEGER NOT NULL REFERENCES member (member_id),
    loan_date TEXT NOT NULL,
    due_date TEXT NOT NULL,
    return_date TEXT,
    fine_amount REAL
);
