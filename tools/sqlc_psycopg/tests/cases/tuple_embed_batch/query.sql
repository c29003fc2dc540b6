-- name: AddAuthors :copyfrom
INSERT INTO authors (id, name) VALUES ($1, $2);

-- name: AddBook :batchone
INSERT INTO books (id, author_id, title) VALUES ($1, $2, $3) RETURNING id, title;

-- name: BooksOf :batchmany
SELECT id, title FROM books WHERE author_id = $1 ORDER BY id;

-- name: BooksWithAuthors :many
-- Each book with its author as a nested model, inside a plain tuple.
SELECT sqlc.embed(books), authors.name FROM books JOIN authors ON authors.id = books.author_id
ORDER BY books.id;
