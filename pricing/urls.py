"""Pages of the price books, mounted at /pricing/."""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.price_book_list, name="price-books"),
    path("books/<str:code>/", views.price_book_detail, name="price-book"),
    path("books/<str:code>/diff/", views.price_book_diff, name="price-book-diff"),
    path(
        "books/<str:code>/versions/<int:number>/export.<str:file_format>",
        views.price_book_download,
        name="price-book-export",
    ),
]
