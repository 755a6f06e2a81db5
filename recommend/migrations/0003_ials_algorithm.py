"""Adds iALS to the algorithm choices of training runs and models."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('recommend', '0002_nightly_training_schedule'),
    ]

    operations = [
        migrations.AlterField(
            model_name='recommendermodel',
            name='algorithm',
            field=models.CharField(choices=[('als', 'Alternating least squares (implicit)'), ('ials', 'iALS (frequency-scaled regularisation, Rendle et al. 2021)'), ('bpr', 'Bayesian personalised ranking (implicit)'), ('item_knn', 'Item-item nearest neighbours (implicit, cosine or BM25)'), ('ease', 'EASE (closed-form item autoencoder)'), ('popular', 'Popularity baseline')], max_length=16),
        ),
        migrations.AlterField(
            model_name='trainingrun',
            name='algorithm',
            field=models.CharField(choices=[('als', 'Alternating least squares (implicit)'), ('ials', 'iALS (frequency-scaled regularisation, Rendle et al. 2021)'), ('bpr', 'Bayesian personalised ranking (implicit)'), ('item_knn', 'Item-item nearest neighbours (implicit, cosine or BM25)'), ('ease', 'EASE (closed-form item autoencoder)'), ('popular', 'Popularity baseline')], max_length=16),
        ),
    ]
