-- name: BooksWithAuthors :many
-- Each book with its author, both as nested models; ids repeat as id and id_2.
SELECT b.id, a.id, sqlc.embed(b), sqlc.embed(a)
FROM books AS b JOIN authors AS a ON a.id = b.author_id
ORDER BY b.id;

-- name: BookWithAuthor :one
SELECT sqlc.embed(books), authors.name FROM books JOIN authors ON authors.id = books.author_id
WHERE books.id = $1;
